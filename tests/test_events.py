"""Stages hand each other typed events; the logs for people are rendered from them."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import fsspec
import pytest
from support import CLI, make_files

from airflow_parallel_run import FileDataset, ParallelRunConfig, run_job
from airflow_parallel_run.errors import StateError
from airflow_parallel_run.events import (
    VERSION,
    ErrorEvent,
    TryEvent,
    event_log,
    read_events,
    to_line,
)
from airflow_parallel_run.plan import JOB_FILE, JobPlan
from airflow_parallel_run.reduce import reduce_job
from airflow_parallel_run.storage import LocalLocation

START = 1795937000.25  # 2026-11-29T07:23:20.250Z

A_TRY = TryEvent(node=1, ip="10.0.0.5", process="process002", pid=4201, mini_batch=11,
                 try_number=2, status="ok", total=10, succeeded=8, start=START, duration=1.5,
                 run_time=1.25)
AN_ERROR = ErrorEvent(time=START, node=1, ip="10.0.0.5", process="process002", pid=4201,
                      what="mini-batch 11 try 1", mini_batch=11, try_number=1,
                      error="ValueError: bad row 4", details="Traceback (most recent call last):")


def write_log(root, lines: list[str], ip: str = "10.0.0.5", process: str = "process002") -> None:
    path = root / event_log(ip, process)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))


# -- the records --------------------------------------------------------------------------------

def test_events_round_trip_through_one_json_line_with_a_version():
    for event in (A_TRY, AN_ERROR):
        line = to_line(event)
        assert line.endswith("\n") and "\n" not in line[:-1]
        data = json.loads(line)
        assert data["v"] == VERSION
        assert type(event).from_dict(data) == event


def test_an_error_outside_a_mini_batch_says_what_failed():
    event = ErrorEvent.now(0, "10.0.0.4", "process000", 17, "RuntimeError: no model")
    assert (event.what, event.mini_batch, event.try_number) == ("init", None, None)
    assert ErrorEvent.from_dict(json.loads(to_line(event))) == event
    assert ErrorEvent.now(0, "ip", "process000", 17, "e", mini_batch=3, try_number=2).what \
        == "mini-batch 3 try 2"


def test_the_reader_skips_a_torn_last_line_with_a_note(tmp_path):
    torn = to_line(A_TRY)[:40]
    write_log(tmp_path, [to_line(A_TRY), to_line(AN_ERROR), torn])
    found = read_events(LocalLocation(str(tmp_path)))
    assert found.tries == [A_TRY] and found.errors == [AN_ERROR]
    assert found.notes == [f"{event_log('10.0.0.5', 'process002')} line 3 left out: torn by a "
                           "crash while it was written"]


def test_the_reader_leaves_out_lines_of_an_unknown_version_with_a_note(tmp_path):
    future = {**A_TRY.to_dict(), "v": VERSION + 1, "mini_batch": 12}
    write_log(tmp_path, [json.dumps(future) + "\n", to_line(A_TRY)])
    found = read_events(LocalLocation(str(tmp_path)))
    assert found.tries == [A_TRY]
    assert len(found.notes) == 1 and f"event version {VERSION + 1}" in found.notes[0]


# -- the lines for people ----------------------------------------------------------------------

def test_the_sys_node_line_is_rendered_from_the_try():
    assert A_TRY.sys_line() == (
        "2026-11-29T07:23:21.750Z node=2 ip=10.0.0.5 pid=4201 mini_batch=11 try=2 status=ok "
        "total=10 succeeded=8 failed=2 start=2026-11-29T07:23:20.250Z duration=1.500 "
        "run_time=1.250\n")


def test_the_error_block_and_its_summary_line_are_rendered_from_the_error():
    assert AN_ERROR.block() == ("=== 2026-11-29T07:23:20.250Z process002 pid 4201 mini-batch 11 "
                                "try 1: ValueError: bad row 4\nTraceback (most recent call last):\n")
    assert AN_ERROR.summary_line() == (
        "2026-11-29T07:23:20.250Z process002 pid 4201 mini-batch 11 try 1: ValueError: bad row 4 "
        "(details: logs/user/error/10.0.0.5/process002.txt)")


# -- a job --------------------------------------------------------------------------------------

FLAKY = """
import os
def run(mini_batch):
    name = os.path.basename(mini_batch[0])
    marker = os.path.join(MARKS, "seen-" + name)
    if name in ("f0001.txt", "f0004.txt") and not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("flaky input, first try")
    return [os.path.basename(p) for p in mini_batch]
"""


def test_a_job_writes_an_event_per_try_and_per_error(runner):
    make_files(runner.inputs, 6)
    result = runner.run(runner.script(FLAKY), mini_batch_size=1, run_max_try=2,
                        process_count_per_node=2)
    assert result.success
    found = read_events(LocalLocation(str(runner.output)))
    assert sorted((t.mini_batch, t.try_number, t.status) for t in found.tries) == [
        (0, 1, "ok"), (1, 1, "failed"), (1, 2, "ok"), (2, 1, "ok"), (3, 1, "ok"), (4, 1, "failed"),
        (4, 2, "ok"), (5, 1, "ok")]
    assert sorted((e.mini_batch, e.try_number) for e in found.errors) == [(1, 1), (4, 1)]
    assert all("Traceback" in e.details and e.pid for e in found.errors)
    assert not found.notes
    node_log = "".join(p.read_text() for p in (runner.output / "logs/sys/node").rglob("*.txt"))
    assert all(t.sys_line() in node_log for t in found.tries)


def test_the_reducer_renders_its_logs_from_events_not_from_the_logs_for_people(runner):
    make_files(runner.inputs, 6)
    script = runner.script(FLAKY)
    assert runner.run(script, mini_batch_size=1, run_max_try=2).success
    out = runner.output
    csv_before = (out / "logs/sys/job_report/processed_mini_batches.csv").read_text()
    errors_before = (out / "logs/user/error.txt").read_text()
    assert "2 errors in 1 groups" in errors_before
    shutil.rmtree(out / "logs/sys/node")
    shutil.rmtree(out / "logs/user/error")

    again = runner.run(script, mini_batch_size=1, run_max_try=2)  # all done: only the reducer
    assert again.success and again.resumed
    assert not (out / "logs/sys/node").exists()  # no node wrote a line
    assert (out / "logs/sys/job_report/processed_mini_batches.csv").read_text() == csv_before
    assert (out / "logs/user/error.txt").read_text() == errors_before
    with open(out / "logs/sys/job_report/processed_mini_batches.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 8


def test_the_job_result_is_kept_as_json_too(runner):
    make_files(runner.inputs, 3)
    result = runner.run(runner.script(FLAKY), mini_batch_size=1, run_max_try=2)
    data = json.loads((runner.output / "logs/job_result.json").read_text())
    assert data == result.to_dict()
    assert data["totals"]["succeeded_items"] == 3


def test_a_remote_output_gets_the_events_of_its_nodes(runner):
    make_files(runner.inputs, 4)
    script = runner.script(FLAKY)
    result = run_job(ParallelRunConfig(entry_script=str(script), mini_batch_size=1, run_max_try=2),
                     [FileDataset.from_files(str(runner.inputs))], "memory://events-out/job")
    assert result.success, result.reason
    fs = fsspec.filesystem("memory")
    rows = fs.cat("/events-out/job/logs/sys/job_report/processed_mini_batches.csv").decode()
    assert len(rows.splitlines()) == 1 + 5  # header, 4 mini-batches, a second try of one
    assert "1 errors in 1 groups" in fs.cat("/events-out/job/logs/user/error.txt").decode()


# -- state of an older version ------------------------------------------------------------------

def test_resuming_state_of_an_older_version_is_refused_with_what_to_do(runner):
    make_files(runner.inputs, 3)
    command = CLI + [str(runner.script(FLAKY)), "--input", str(runner.inputs), "--output",
                     str(runner.output), "--mini-batch-size", "1", "--quiet"]
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    job_file = runner.output / JOB_FILE
    job = json.loads(job_file.read_text())
    del job["state_format"]  # as the versions before events wrote it
    job_file.write_text(json.dumps(job))

    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert (f"this output holds state of an older airflow-parallel-run (format 1); delete "
            f"{runner.output / '.parallel_run'} to start again") in done.stderr
    assert "Traceback" not in done.stderr


def test_the_reducer_refuses_state_of_an_older_version(runner):
    make_files(runner.inputs, 2)
    script = runner.script(FLAKY)
    assert runner.run(script, mini_batch_size=1, run_max_try=2).success
    location = LocalLocation(str(runner.output))
    job = location.read_json(JOB_FILE)
    job["state_format"] = 1
    location.write_json(JOB_FILE, job)
    plan = JobPlan(str(runner.output), 2, 2, 1, job["fingerprint"], True, 0.0)
    with pytest.raises(StateError, match=r"older airflow-parallel-run \(format 1\)"):
        reduce_job(location, ParallelRunConfig(entry_script=str(script)), plan, [])


def test_nodes_are_numbered_from_1_wherever_people_read_them(runner):
    """Airflow's UI names node tasks "node 1 of 2": the node logs, the CSV and the report too."""
    make_files(runner.inputs, 4)
    result = runner.run(runner.script(FLAKY), mini_batch_size=1, run_max_try=2, node_count=2,
                        work_sharing=False)
    assert result.success
    out = runner.output
    node_log = "".join(p.read_text() for p in (out / "logs/sys/node").rglob("*.txt"))
    assert {line.split()[1] for line in node_log.splitlines() if " node=" in line} == {
        "node=1", "node=2"}
    with open(out / "logs/sys/job_report/processed_mini_batches.csv") as handle:
        assert {row["node"] for row in csv.DictReader(handle)} == {"1", "2"}
    report = (out / "logs/job_report.html").read_text()
    assert "node 1 (" in report and "node 2 (" in report and "node 0" not in report


def test_a_try_whose_node_is_not_known_says_unknown():
    recovered = TryEvent(node=-1, ip="unknown", process="process001", pid=None, mini_batch=3,
                         try_number=1, status="ok", total=1, succeeded=1, start=START,
                         duration=0.0, run_time=0.0, recovered=True)
    assert " node=unknown " in recovered.sys_line() and recovered.csv_row()[0] == "unknown"
