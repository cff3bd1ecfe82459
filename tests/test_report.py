"""logs/job_report.html: built from a job's result and events, self-contained, rendered by Chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from datetime import datetime
from pathlib import Path
from typing import TextIO

import pytest

from airflow_parallel_run.events import ErrorEvent, TryEvent, event_log, to_line
from airflow_parallel_run.monitor import DISK_COLUMNS, NODE_COLUMNS, PROCESS_COLUMNS
from airflow_parallel_run.reduce import JobResult, write_job_result
from airflow_parallel_run.report import group_errors, write_job_report
from airflow_parallel_run.storage import LocalLocation
from airflow_parallel_run.thresholds import Totals

RESULT = JobResult(
    success=False,
    reason="2 mini-batches failed: more than error_threshold 1 (mini_batch_error_threshold)",
    totals=Totals(mini_batches_done=11, failed_mini_batches=2, succeeded_items=83, failed_items=27),
    mini_batch_count=12, item_count=120, output_dir="/out", missing_mini_batches=1,
    elapsed_seconds=41.3)

# node 0 (10.0.0.4: process000, process001) and node 1 (10.0.0.5: process002, process003).
# Mini-batch 3 fails once, 9 dies once, 7 times out twice and 11 fails twice (both failed for
# good); 10 is stopped when the job ends. Node 0 finishes 0-5 and 9, node 1 finishes 6-8 and 11.
TRIES = [  # node, ip, process, pid, mini_batch, try, status, total, succeeded, second, duration
    (0, "10.0.0.4", "process000", 4001, 0, 1, "ok", 10, 10, 0.0, 1.2),
    (0, "10.0.0.4", "process001", 4102, 1, 1, "ok", 10, 10, 0.1, 1.4),
    (0, "10.0.0.4", "process000", 4001, 2, 1, "ok", 10, 10, 1.3, 2.0),
    (0, "10.0.0.4", "process001", 4102, 3, 1, "failed", 10, 0, 1.6, 0.4),
    (0, "10.0.0.4", "process001", 4102, 3, 2, "ok", 10, 10, 2.1, 1.1),
    (0, "10.0.0.4", "process000", 4001, 4, 1, "ok", 10, 9, 3.4, 0.9),
    (0, "10.0.0.4", "process000", 4001, 9, 1, "died", 10, 0, 4.4, 3.1),
    (0, "10.0.0.4", "process000", 4003, 9, 2, "ok", 10, 10, 8.0, 1.0),
    (0, "10.0.0.4", "process001", 4102, 5, 1, "ok", 10, 10, 3.3, 1.6),
    (0, "10.0.0.4", "process001", 4103, 10, 1, "stopped", 10, 0, 9.5, 0.3),
    (1, "10.0.0.5", "process002", 4201, 6, 1, "ok", 10, 10, 0.0, 2.2),
    (1, "10.0.0.5", "process003", 4301, 7, 1, "timeout", 10, 0, 0.2, 5.0),
    (1, "10.0.0.5", "process002", 4201, 8, 1, "ok", 10, 4, 2.3, 1.5),
    (1, "10.0.0.5", "process002", 4201, 11, 1, "failed", 10, 0, 3.9, 0.7),
    (1, "10.0.0.5", "process002", 4201, 11, 2, "failed", 10, 0, 4.7, 0.8),
    (1, "10.0.0.5", "process003", 4302, 7, 2, "timeout", 10, 0, 5.4, 5.0),
]
T0 = "2026-11-29T07:22:"  # every try starts in this minute, at T0 + 20 + second


def start(second: float) -> str:
    return f"{T0}{20 + second:06.3f}Z"


ERRORS = [  # ip, process, pid, mini-batch (None: init), try, error; oldest first
    ("10.0.0.4", "process001", 4102, 3, 1, "ValueError: bad row 17 in '/data/in/f0003.csv'"),
    ("10.0.0.5", "process003", 4301, 7, 1, "run() timed out after 5 s (run_invocation_timeout);"
     " the worker and its child processes were killed"),
    ("10.0.0.5", "process002", 4201, 11, 1, "ValueError: bad row 4 in '/data/in/f0011.csv'"),
    ("10.0.0.4", "process000", 4001, 9, 1, "the worker process died during run() (killed by"
     " signal SIGKILL)"),
    ("10.0.0.5", "process002", 4201, 11, 2, "ValueError: bad row 4 in '/data/in/f0011.csv'"),
    ("10.0.0.5", "process003", 4302, 7, 2, "run() timed out after 5 s (run_invocation_timeout);"
     " the worker and its child processes were killed"),
    ("10.0.0.4", "process001", 4103, None, None,
     'RuntimeError: model <b>v2</b> & "friends" not found'),
]
ERROR_SECONDS = [2.0, 5.2, 4.6, 7.5, 5.5, 10.4, 9.9]


def epoch(second: float) -> float:
    return datetime.fromisoformat(start(second)).timestamp()


def error_events() -> list[ErrorEvent]:
    return [ErrorEvent(epoch(second), 0, ip, process, pid,
                       "init" if index is None else f"mini-batch {index} try {try_}", index,
                       try_, error, "Traceback ...")
            for (ip, process, pid, index, try_, error), second
            in zip(ERRORS, ERROR_SECONDS, strict=True)]


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_job_logs(root: Path, perf: bool = True) -> None:
    """What a reducer leaves for the report: its result, the nodes' events, resource files."""
    write(root, "logs/job_result.json", json.dumps(RESULT.to_dict()))
    for node, ip, process, pid, index, try_, status, total, ok, second, duration in TRIES:
        event = TryEvent(node, ip, process, pid, index, try_, status, total, ok, epoch(second),
                         duration, duration - 0.05)
        with open_event_log(root, ip, process) as log:
            log.write(to_line(event))
    for event in error_events():
        with open_event_log(root, event.ip, event.process) as log:
            log.write(to_line(event))
    if perf:
        for ip, workers, base in (("10.0.0.4", ("process000", "process001"), 40.0),
                                  ("10.0.0.5", ("process002", "process003"), 70.0)):
            node, procs, disk = [",".join(NODE_COLUMNS)], [",".join(PROCESS_COLUMNS)], [",".join(DISK_COLUMNS)]
            for second in range(12):
                t = start(second)
                node.append(f"{t},{base + second:.1f},4,16000.0,{6000 + 100 * second:.1f},"
                            f"{37.5 + 0.6 * second:.1f},0.0,1200.5,800.2,50.1,75.3,1.20")
                for i, name in enumerate(workers):
                    procs.append(f"{t},{name},{5000 + i},{90.0 + i:.1f},{300 + 10 * second + i:.1f},3,0")
                disk.append(f"{t},/,500.00,120.00,380.00,24.0")
            write(root, f"logs/perf/{ip}/node_resource_usage.csv", "\n".join(node) + "\n")
            write(root, f"logs/perf/{ip}/processes_resource_usage.csv", "\n".join(procs) + "\n")
            write(root, f"logs/perf/{ip}/node_disk_usage.csv", "\n".join(disk) + "\n")


def open_event_log(root: Path, ip: str, process: str) -> TextIO:
    path = root / event_log(ip, process)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a")


@pytest.fixture
def report(tmp_path) -> tuple[Path, str]:
    root = tmp_path / "out"
    write_job_logs(root)
    where = write_job_report(LocalLocation(str(root)))
    return Path(where), Path(where).read_text()


def text_of(page: str, element_id: str) -> str:
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<', page)
    assert match, f"no element with id {element_id!r}"
    return match.group(1)


def series_of(page: str, chart_id: str) -> dict[str, str]:
    """label -> last value of every polyline.series in the chart."""
    chart = re.search(rf'<svg id="{chart_id}".*?</svg>', page, re.S)
    assert chart, f"no chart {chart_id!r}"
    lines = re.findall(r'<polyline class="series"[^>]*data-label="([^"]*)" data-last="([^"]*)"'
                       r'[^>]*points="([^"]+)"', chart.group(0))
    return {label: last for label, last, _ in lines}


# -- the page ---------------------------------------------------------------------------------------

def test_the_report_is_written_under_logs_and_its_path_returned(report, tmp_path):
    path, page = report
    assert path == tmp_path / "out" / "logs" / "job_report.html"
    assert page.startswith("<!DOCTYPE html>")


def test_the_summary_shows_the_result_and_the_counts(report):
    _, page = report
    assert text_of(page, "job-status") == "FAILED"
    assert "more than error_threshold 1" in text_of(page, "job-reason")
    expected = {"mini-batches-planned": "12", "mini-batches-done": "11", "mini-batches-failed": "2",
                "mini-batches-without-a-result": "1", "items-planned": "120",
                "items-succeeded": "83", "items-failed": "27"}
    assert {key: text_of(page, key) for key in expected} == expected
    assert {s: text_of(page, f"tries-{s}") for s in ("ok", "failed", "timeout", "died", "stopped")} \
        == {"ok": "9", "failed": "3", "timeout": "2", "died": "1", "stopped": "1"}


def test_the_progress_chart_has_a_cumulative_line_per_node(report):
    _, page = report
    # a mini-batch counts once, when its deciding try ends; a stopped one does not count
    assert series_of(page, "chart-progress") == {"node 1 (10.0.0.4)": "7", "node 2 (10.0.0.5)": "4"}


def test_the_slowest_tries_are_listed_longest_first(report):
    _, page = report
    table = re.search(r'<table id="slowest">.*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td><td>(\w+)</td><td[^>]*>([\d.]+)</td>",
                      table)
    assert len(rows) == 10
    assert rows[:3] == [("7", "1", "timeout", "5.000"), ("7", "2", "timeout", "5.000"),
                        ("9", "1", "died", "3.100")]
    durations = [float(r[3]) for r in rows]
    assert durations == sorted(durations, reverse=True)


def test_identical_errors_are_grouped_with_count_first_place_and_traceback(report):
    _, page = report
    assert text_of(page, "error-count") == "7"
    assert text_of(page, "error-group-count") == "4"
    groups = re.findall(r'<tr class="error-group"><td class="num">(\d+)</td><td><code>([^<]*)</code>'
                        r"</td><td>([^<]*)</td><td>([^<]*)</td>", page)
    assert groups[0] == ("3", "ValueError: bad row &lt;n&gt; in &lt;str&gt;", start(2.0),
                         "mini-batch 3 try 1 (process001 pid 4102)")
    assert groups[1][:2] == ("2", "run() timed out after &lt;n&gt; s (run_invocation_timeout); "
                                  "the worker and its child processes were killed")
    assert '<a href="user/error/10.0.0.4/process001.txt">' in page


def test_user_strings_are_escaped(report):
    _, page = report
    assert "<b>v2</b>" not in page
    assert "model &lt;b&gt;v2&lt;/b&gt; &amp; &quot;friends&quot; not found" in page


def test_resource_use_is_charted_per_node(report):
    _, page = report
    assert series_of(page, "chart-cpu") == {"10.0.0.4": "51", "10.0.0.5": "81"}
    assert series_of(page, "chart-memory") == {"10.0.0.4": "44.1", "10.0.0.5": "44.1"}
    usage = re.search(r'<table id="process-usage">.*?</table>', page, re.S).group(0)
    assert "<td>process003</td>" in usage and ">411.0<" in usage  # peak rss of process003


def test_the_page_fetches_nothing(report):
    _, page = report
    for fetch in ("<script", "<link", " src=", "url(", "@import", "http://", "https://"):
        assert fetch not in page, fetch
    assert "Content-Security-Policy" in page


def test_missing_inputs_leave_notes_not_errors(tmp_path):
    page = Path(write_job_report(LocalLocation(str(tmp_path)))).read_text()
    assert "logs/job_result.txt is not there" in page
    assert "no finished mini-batch" in page
    assert "no errors recorded" in page
    assert "no resource files" in page
    assert "<svg" not in page


def test_without_perf_files_the_resource_section_is_a_note(tmp_path):
    write_job_logs(tmp_path, perf=False)
    page = Path(write_job_report(LocalLocation(str(tmp_path)))).read_text()
    assert 'id="chart-progress"' in page
    assert 'id="chart-cpu"' not in page
    assert "no resource files" in page


# -- grouping errors (what the reducer reuses for logs/user/error.txt) ---------------------------

def test_group_errors_puts_the_most_frequent_first_and_keeps_the_earliest():
    groups = group_errors(error_events())
    assert [g.count for g in groups] == [3, 2, 1, 1]
    died = next(g for g in groups if "died" in g.signature)
    assert died.signature == "the worker process died during run() (killed by signal SIGKILL)"
    assert died.first_where == "mini-batch 9 try 1 (process000 pid 4001)"
    assert died.details == "logs/user/error/10.0.0.4/process000.txt"
    timeout = groups[1]
    assert (timeout.first_time, timeout.details) == (start(5.2), "logs/user/error/10.0.0.5/process003.txt")
    assert "3 x ValueError: bad row <n> in <str>" in groups[0].describe()


def test_group_errors_tells_different_exceptions_with_the_same_message_apart():
    errors = [ErrorEvent(epoch(second), 0, "ip", "process000", 1, f"mini-batch {second} try 1",
                         second, 1, error)
              for second, error in ((1, "KeyError: 'a'"), (2, "ValueError: 'a'"), (3, "KeyError: 'b'"))]
    assert [(g.signature, g.count) for g in group_errors(errors)] == [
        ("KeyError: <str>", 2), ("ValueError: <str>", 1)]


# -- in a browser ------------------------------------------------------------------------------------

def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium is not installed: the job report is checked in headless Chromium. "
                    "Install Debian's package: apt-get update && apt-get install -y chromium")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"{command} failed:\n{done.stderr[-3000:]}"
    return done


def test_chromium_renders_the_chart_and_the_numbers(report, tmp_path):
    path, _ = report
    dom = chromium(tmp_path, "--dump-dom", path.as_uri()).stdout
    assert series_of(dom, "chart-progress") == {"node 1 (10.0.0.4)": "7", "node 2 (10.0.0.5)": "4"}
    assert set(series_of(dom, "chart-cpu")) == {"10.0.0.4", "10.0.0.5"}
    assert text_of(dom, "job-status") == "FAILED"
    assert text_of(dom, "items-succeeded") == "83"
    assert text_of(dom, "items-failed") == "27"
    assert text_of(dom, "error-group-count") == "4"


def test_chromium_takes_a_screenshot_of_the_page(report, tmp_path):
    path, _ = report
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,2400", path.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1100, 2400)
    assert len(data) > 50_000, f"{len(data)} bytes: the page looks empty"


def test_job_result_of_a_table_says_planned_rows_are_unknown_not_an_unknown_number(
        tmp_path: Path):
    location = LocalLocation(str(tmp_path))
    result = JobResult(True, None, Totals(mini_batches_done=2, succeeded_items=20000), 2, None,
                       str(tmp_path))

    write_job_result(location, result, None)

    text = (tmp_path / "logs" / "job_result.txt").read_text()
    assert "items: 20000 succeeded, 0 failed (planned: not known before the rows are read)" \
        in text
    assert "an unknown number of planned" not in text
