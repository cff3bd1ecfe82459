"""The logs a job leaves: overview, per-mini-batch report, errors, no secrets."""

from __future__ import annotations

import csv
import subprocess

from support import make_files

MIXED = """
import os, signal, time
def run(mini_batch):
    name = os.path.basename(mini_batch[0])
    marker = os.path.join(MARKS, "seen-" + name)
    first = not os.path.exists(marker)
    open(marker, "w").close()
    if name == "f0000.txt":
        raise ValueError("bad input 17 in " + mini_batch[0])
    if name == "f0002.txt":
        raise ValueError("bad input 23 in " + mini_batch[0])
    if name == "f0004.txt" and first:
        time.sleep(10_000)
    if name == "f0006.txt" and first:
        os.kill(os.getpid(), signal.SIGKILL)
    if name == "f0008.txt":
        return [name]
    return [os.path.basename(p) for p in mini_batch]
"""


def test_a_mixed_job_leaves_every_log_and_the_counts_add_up(runner):
    make_files(runner.inputs, 12)
    result = runner.run(runner.script(MIXED), mini_batch_size=2, run_max_try=2,
                        run_invocation_timeout=1.5, process_count_per_node=2)
    out = runner.output
    # 6 mini-batches: 2 fail twice (4 failed items), 1 returns 1 of 2, 3 succeed (1 after a
    # timeout, 1 after a crash)
    assert result.success
    assert (result.totals.failed_mini_batches, result.totals.failed_items,
            result.totals.succeeded_items) == (2, 5, 7)

    overview = (out / "logs/job_progress_overview.txt").read_text()
    assert "status: SUCCESS" in overview
    assert "mini-batches: 6 scheduled, 6 done (100.0%), 2 failed" in overview
    assert "items: 12 scheduled, 7 succeeded, 5 failed" in overview

    with open(out / "logs/sys/job_report/processed_mini_batches.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["mini_batch"], r["try"], r["status"]) for r in rows] == [
        ("0", "1", "failed"), ("0", "2", "failed"),
        ("1", "1", "failed"), ("1", "2", "failed"),
        ("2", "1", "timeout"), ("2", "2", "ok"),
        ("3", "1", "died"), ("3", "2", "ok"),
        ("4", "1", "ok"), ("5", "1", "ok"),
    ]
    ok_rows = [r for r in rows if r["status"] == "ok"]
    assert sum(int(r["succeeded"]) for r in ok_rows) == result.totals.succeeded_items
    assert all(r["pid"].isdigit() and r["ip"] and r["start"].endswith("Z") for r in rows)

    grouped, every = (out / "logs/user/error.txt").read_text().split("every error, oldest first:\n")
    errors = every.splitlines()
    assert len(errors) == 7  # 4 raised tries, 1 timeout, 1 crash, 1 short result
    assert all("(details: logs/user/error/" in e for e in errors)
    groups = grouped.splitlines()
    assert groups[0] == "7 errors in 4 groups, most frequent first:"
    assert groups[1].startswith("4 x ValueError: bad input <n> in <path>")
    job_result = (out / "logs/job_result.txt").read_text()
    assert "items: 12 planned, 7 succeeded, 5 failed" in job_result

    for kind in ("stdout", "stderr", "entry_script_log"):
        assert len(list((out / "logs/user" / kind).rglob("process00*"))) == 2
    assert len(list((out / "logs/sys/node").rglob("process00*.txt"))) == 2
    master = (out / "logs/sys/master_role.txt").read_text()
    assert "planned 12 items in 6 mini-batches" in master and "job result: SUCCESS" in master


def test_secrets_never_reach_a_log(runner):
    make_files(runner.inputs, 4)
    secret = "s3cr3t-Passw0rd"
    script = runner.script("""
    import argparse, os, subprocess, sys
    from airflow_parallel_run import EntryScript
    def run(mini_batch):
        parser = argparse.ArgumentParser()
        parser.add_argument("--password")
        password = parser.parse_known_args()[0].password
        print("connecting with", password)
        print("to stderr", password, file=sys.stderr)
        EntryScript().logger.warning("logged %s", password)
        subprocess.run(["echo", "child says " + password])
        if mini_batch[0].endswith("f0000.txt"):
            raise RuntimeError("login failed for " + password)
        return [password for _ in mini_batch]
    """)
    result = runner.run(script, mini_batch_size=2, run_max_try=1,
                        arguments=["--password", secret], secrets=[secret],
                        output_action="summary_only")
    assert result.totals.failed_mini_batches == 1
    found = subprocess.run(["grep", "-rl", secret, str(runner.output)], capture_output=True, text=True)
    assert found.stdout == ""
    stdout = "".join(p.read_text() for p in (runner.output / "logs/user/stdout").rglob("*.txt"))
    assert "connecting with ***" in stdout and "child says ***" in stdout
    errors = (runner.output / "logs/user/error.txt").read_text()
    assert "login failed for ***" in errors


def test_the_resource_monitor_samples_workers_and_is_off_at_zero(runner):
    make_files(runner.inputs, 6)
    script = runner.script("import time\ndef run(mb):\n    time.sleep(0.3)\n    return mb\n")
    result = runner.run(script, mini_batch_size=1, process_count_per_node=2,
                        resource_monitor_interval=0.2)
    assert result.success
    [perf] = list((runner.output / "logs/perf").iterdir())
    with open(perf / "processes_resource_usage.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["process"] for r in rows} == {"process000", "process001"}
    with open(perf / "node_resource_usage.csv") as handle:
        assert len(list(csv.DictReader(handle))) >= 3
    assert (perf / "node_disk_usage.csv").exists()
    assert list((perf / "os").rglob("processes_*"))
    report = (runner.output / "logs/job_report.html").read_text()
    assert 'id="chart-progress"' in report and 'id="chart-cpu"' in report

    runner.output = runner.tmp / "out-without-monitor"
    assert runner.run(script, mini_batch_size=3, resource_monitor_interval=0).success
    assert not (runner.output / "logs/perf").exists()
    assert (runner.output / "logs/job_report.html").exists()


def test_the_overview_is_rewritten_while_the_job_runs(runner, monkeypatch):
    import threading
    import time

    from airflow_parallel_run.engine import node_logs

    monkeypatch.setattr(node_logs, "OVERVIEW_INTERVAL", 0.3)
    make_files(runner.inputs, 8)
    script = runner.script("import time\ndef run(mb):\n    time.sleep(0.4)\n    return mb\n")
    seen: list[str] = []

    def watch() -> None:
        overview = runner.output / "logs/job_progress_overview.txt"
        for _ in range(60):
            if overview.exists():
                seen.append(overview.read_text())
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = runner.run(script, mini_batch_size=1)
    watcher.join()
    running = [text for text in seen if "status: RUNNING" in text]
    assert result.success and len({text for text in running}) >= 3
    assert any("estimated time left" in text and "8 scheduled" in text for text in running)
    assert "status: SUCCESS" in (runner.output / "logs/job_progress_overview.txt").read_text()


def test_debug_level_adds_worker_and_dispatch_lines_to_the_node_logs(runner):
    make_files(runner.inputs, 4)
    script = runner.script("def run(mb):\n    return mb\n")
    runner.run(script, mini_batch_size=2, logging_level="DEBUG")
    debug = (runner.output / "logs/sys/node").rglob("process000.txt")
    text = "".join(p.read_text() for p in debug)
    assert "DEBUG started worker pid=" in text and "DEBUG sent mini_batch=1 try=1" in text
    runner.output = runner.tmp / "out-info"
    runner.run(script, mini_batch_size=2, logging_level="INFO")
    text = "".join(p.read_text() for p in (runner.output / "logs/sys/node").rglob("*.txt"))
    assert "DEBUG" not in text and "mini_batch=1" in text


def test_the_command_line_prints_progress_lines_when_not_on_a_terminal(runner):
    import os
    import subprocess

    from support import CLI

    make_files(runner.inputs, 6)
    script = runner.script("import time\ndef run(mb):\n    time.sleep(0.3)\n    return mb\n")
    done = subprocess.run(CLI + [str(script), "--input", str(runner.inputs), "--output",
                                 str(runner.output), "--mini-batch-size", "1"],
                          env={**os.environ, "PARALLEL_RUN_PROGRESS_SECONDS": "0.4"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("progress: ")]
    assert len(lines) >= 3
    assert "mini-batches/s" in lines[-1] and "ETA" in lines[-1] and "/6 mini-batches" in lines[-1]
    assert "6 items succeeded, 0 failed" in done.stdout


def test_a_file_name_that_is_not_utf8_is_escaped_in_every_log(runner):
    runner.inputs.mkdir()
    (runner.inputs / "caf\udce9.txt").write_text("x\n")  # the name's bytes: b"caf\xe9.txt"
    script = runner.script("""
        def run(mini_batch):
            raise ValueError("bad " + mini_batch[0])
    """)
    result = runner.run(script, run_max_try=1)
    assert result.totals.failed_items == 1
    logs = runner.output / "logs"
    for path in logs.rglob("*"):
        if path.is_file():
            path.read_text(encoding="utf-8")  # every log stays UTF-8
    assert "caf\\xe9.txt" in (logs / "user/error.txt").read_text()
    assert "\\xe9.txt" in (logs / "job_result.txt").read_text()
    assert "caf\\xe9.txt" in (logs / "job_report.html").read_text()
