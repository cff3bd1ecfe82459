"""The resource monitor: rows at a short interval, headers once, nothing at interval 0."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from airflow_parallel_run.monitor import (
    DISK_COLUMNS,
    NODE_COLUMNS,
    PROCESS_COLUMNS,
    SETTLE,
    ResourceMonitor,
)
from airflow_parallel_run.storage import LocalLocation

IP = "10.1.2.3"
INTERVAL = 0.2
RUN_FOR = 1.2


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


@pytest.fixture
def child():
    process = sleeper()
    yield process
    process.kill()
    process.wait()


def monitor_for(location: LocalLocation, processes, seconds: float = RUN_FOR) -> None:
    monitor = ResourceMonitor(location, IP, INTERVAL, processes)
    monitor.start()
    time.sleep(seconds)
    monitor.stop()


def perf(root: Path, name: str) -> Path:
    return root / "logs" / "perf" / IP / name


def csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    rows = list(csv.reader(lines))
    return lines, rows


def test_each_csv_has_its_header_once_and_a_row_per_sample(tmp_path, child):
    monitor_for(LocalLocation(str(tmp_path)), lambda: {"process000": child.pid})

    for name, columns in (("node_resource_usage.csv", NODE_COLUMNS),
                          ("processes_resource_usage.csv", PROCESS_COLUMNS),
                          ("node_disk_usage.csv", DISK_COLUMNS)):
        lines, rows = csv_rows(perf(tmp_path, name))
        assert lines[0] == ",".join(columns), name
        assert lines.count(lines[0]) == 1, name
        assert len(rows) - 1 >= 4, f"{name}: {len(rows) - 1} samples in {RUN_FOR} s"
        assert all(len(row) == len(columns) for row in rows), name

    _, rows = csv_rows(perf(tmp_path, "node_resource_usage.csv"))
    sample = dict(zip(NODE_COLUMNS, rows[-1], strict=True))
    assert sample["time"].endswith("Z")
    assert 0.0 <= float(sample["cpu_percent"]) <= 100.0
    assert float(sample["memory_total_mb"]) > float(sample["memory_used_mb"]) > 0


def test_a_worker_row_names_its_process_and_pid(tmp_path, child):
    monitor_for(LocalLocation(str(tmp_path)), lambda: {"process007": child.pid})

    _, rows = csv_rows(perf(tmp_path, "processes_resource_usage.csv"))
    samples = [dict(zip(PROCESS_COLUMNS, row, strict=True)) for row in rows[1:]]
    assert {(s["process"], s["pid"]) for s in samples} == {("process007", str(child.pid))}
    assert all(float(s["rss_mb"]) > 0 and int(s["threads"]) >= 1 for s in samples)
    assert all(s["children"] == "0" for s in samples)


def test_the_process_table_snapshot_lists_the_worker(tmp_path, child):
    monitor_for(LocalLocation(str(tmp_path)), lambda: {"process000": child.pid}, seconds=0.5)

    snapshots = sorted(perf(tmp_path, "os").glob("*/processes_*"))
    assert snapshots, "no os/<%Y%m%d%H>/processes_<%M> file"
    hour, minute = snapshots[0].parent.name, snapshots[0].name.removeprefix("processes_")
    assert len(hour) == 10 and hour.isdigit() and len(minute) == 2 and minute.isdigit()
    table = snapshots[0].read_text().splitlines()
    assert table[1].split()[:3] == ["PID", "PPID", "USER"]
    line = next(t for t in table if t.split()[0] == str(child.pid))
    assert "time.sleep(30)" in line


def test_a_second_monitor_appends_without_a_second_header(tmp_path, child):
    location = LocalLocation(str(tmp_path))
    monitor_for(location, lambda: {"process000": child.pid}, seconds=0.5)
    first = {name: len(csv_rows(perf(tmp_path, name))[1])
             for name in ("node_resource_usage.csv", "processes_resource_usage.csv")}
    monitor_for(location, lambda: {"process000": child.pid}, seconds=0.5)

    for name, before in first.items():
        lines, rows = csv_rows(perf(tmp_path, name))
        assert lines.count(lines[0]) == 1, f"{name} has its header twice"
        assert len(rows) > before


def test_interval_zero_writes_nothing(tmp_path, child):
    monitor = ResourceMonitor(LocalLocation(str(tmp_path)), IP, 0, lambda: {"process000": child.pid})
    monitor.start()
    time.sleep(0.3)
    monitor.stop()
    assert list(tmp_path.iterdir()) == []


def test_a_worker_that_exits_mid_run_does_not_stop_the_samples(tmp_path, child):
    short_lived = sleeper()
    workers = {"process000": child.pid, "process001": short_lived.pid, "process002": 2 ** 22 + 7}
    monitor = ResourceMonitor(LocalLocation(str(tmp_path)), IP, INTERVAL, lambda: dict(workers))
    monitor.start()
    time.sleep(0.5)
    short_lived.kill()  # the node has not noticed yet: processes() still names it
    short_lived.wait()
    time.sleep(0.7)
    monitor.stop()

    _, rows = csv_rows(perf(tmp_path, "processes_resource_usage.csv"))
    samples = [dict(zip(PROCESS_COLUMNS, row, strict=True)) for row in rows[1:]]
    times_of = {name: [s["time"] for s in samples if s["process"] == name]
                for name in workers}
    assert len(times_of["process000"]) >= 4  # sampled before and after the exit
    assert max(times_of["process000"]) > max(times_of["process001"])
    assert times_of["process002"] == []  # never existed: no row, no crash
    _, node_rows = csv_rows(perf(tmp_path, "node_resource_usage.csv"))
    assert len(node_rows) - 1 >= 4


def test_processes_that_raises_costs_only_the_worker_rows(tmp_path):
    def broken() -> dict[str, int]:
        raise RuntimeError("the node is changing its slots")

    monitor_for(LocalLocation(str(tmp_path)), broken, seconds=0.5)
    _, node_rows = csv_rows(perf(tmp_path, "node_resource_usage.csv"))
    _, process_rows = csv_rows(perf(tmp_path, "processes_resource_usage.csv"))
    assert len(node_rows) - 1 >= 2
    assert process_rows == [list(PROCESS_COLUMNS)]


def test_a_command_line_with_line_breaks_stays_on_its_own_row(tmp_path):
    # bash -c 'multi-line script' and python -c '...' with newlines are common on CI machines
    process = subprocess.Popen([sys.executable, "-c", "import time\ntime.sleep(30)\t# end"])
    try:
        monitor_for(LocalLocation(str(tmp_path)), lambda: {"process000": process.pid}, seconds=0.3)
    finally:
        process.kill()
        process.wait()

    table = next(perf(tmp_path, "os").glob("*/processes_*")).read_text().splitlines()
    assert all(row.split() for row in table), "a blank row in the process table"
    row = next(t for t in table if t.split()[0] == str(process.pid))
    assert row.endswith("-c import time\\ntime.sleep(30)\\t# end")


def test_command_lines_in_the_snapshot_pass_through_redact(tmp_path, child):
    monitor = ResourceMonitor(LocalLocation(str(tmp_path)), IP, INTERVAL,
                              lambda: {"process000": child.pid},
                              redact=lambda text: text.replace("time.sleep(30)", "***"))
    monitor.start()
    monitor.stop()

    table = next(perf(tmp_path, "os").glob("*/processes_*")).read_text()
    line = next(t for t in table.splitlines() if t.split()[0] == str(child.pid))
    assert "***" in line and "time.sleep(30)" not in table


def test_nodes_of_one_process_on_one_folder_write_each_minutes_table_once(tmp_path, child):
    # the nodes of `parallel-run --node-count N` sample the same machine into one folder
    location = LocalLocation(str(tmp_path))
    first = ResourceMonitor(location, IP, 600, lambda: {"process000": child.pid})
    second = ResourceMonitor(location, IP, 600, lambda: {"process001": child.pid})
    first.start()
    second.start()
    first.stop()
    written = {path: path.stat().st_ino for path in perf(tmp_path, "os").glob("*/processes_*")}
    second.stop()

    assert written, "no process table snapshot"
    assert all(path.stat().st_ino == inode for path, inode in written.items()), \
        "the second node walked the process table again for the same minute"


def test_a_long_interval_takes_the_first_table_while_the_workers_run_not_at_the_end(tmp_path, child):
    # a short job's one table is then off its end, and shows its workers running
    monitor = ResourceMonitor(LocalLocation(str(tmp_path)), IP, 600, lambda: {"process000": child.pid})
    monitor.start()
    time.sleep(2 * SETTLE + 0.5)
    stopping = time.time()
    monitor.stop()

    table = next(perf(tmp_path, "os").glob("*/processes_*")).read_text().splitlines()
    taken = datetime.fromisoformat(table[0].split()[1].replace("Z", "+00:00")).timestamp()
    assert taken < stopping
    assert any(t.split()[0] == str(child.pid) for t in table[2:])
