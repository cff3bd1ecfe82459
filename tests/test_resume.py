"""A job whose process is SIGKILLed resumes: finished mini-batches are not run again."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from collections import Counter

from support import CLI, make_files, output_lines, pid_alive

from airflow_parallel_run.config import ParallelRunConfig
from airflow_parallel_run.events import read_events
from airflow_parallel_run.plan import JOB_FILE, JobPlan
from airflow_parallel_run.reduce import reduce_job
from airflow_parallel_run.results import Records
from airflow_parallel_run.storage import LocalLocation

SLOW_ECHO = """
import os, time
def run(mini_batch):
    time.sleep(0.15)
    for p in mini_batch:
        with open(os.path.join(MARKS, "calls"), "a") as f:
            f.write(os.path.basename(p) + "\\n")
    return [os.path.basename(p) for p in mini_batch]
"""


def _finished(output) -> set[int]:
    return set(Records(LocalLocation(str(output))).indices())


def test_cli_killed_mid_job_then_run_again_finishes_exactly_once(runner):
    make_files(runner.inputs, 60)
    script = runner.script(SLOW_ECHO)
    cmd = CLI + [str(script), "--input", str(runner.inputs), "--output", str(runner.output),
                 "--mini-batch-size", "2", "--process-count-per-node", "2", "--quiet"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(_finished(runner.output)) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(1.0)  # orphaned workers die with their node (PDEATHSIG); let any write land
    done_before = _finished(runner.output)
    assert 8 <= len(done_before) < 30
    assert not (runner.output / "parallel_run_step.txt").exists()
    calls_before = Counter((runner.marks / "calls").read_text().split())

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "resumed an earlier run" in second.stdout
    assert output_lines(runner.output) == [f"f{i:04d}.txt" for i in range(60)]
    calls_after = Counter((runner.marks / "calls").read_text().split()) - calls_before
    rerun = {int(name[1:5]) // 2 for name in calls_after}
    assert not rerun & done_before  # no finished mini-batch ran again
    assert rerun == set(range(30)) - done_before


def test_workers_die_with_a_killed_node(runner):
    make_files(runner.inputs, 4)
    script = runner.script("""
    import os, time
    def init():
        open(os.path.join(MARKS, f"worker-{os.getpid()}"), "w").close()
    def run(mini_batch):
        time.sleep(10_000)
    """)
    cmd = CLI + [str(script), "--input", str(runner.inputs), "--output", str(runner.output),
                 "--process-count-per-node", "2", "--quiet"]
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while len(runner.marks_named("worker-")) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    pids = [int(p.name.split("-")[1]) for p in runner.marks_named("worker-")]
    assert pids
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in pids)


def test_cli_run_again_after_an_input_changed_reruns_only_its_mini_batch(runner):
    make_files(runner.inputs, 10)
    script = runner.script(SLOW_ECHO.replace("time.sleep(0.15)", "pass").replace(
        "return [os.path.basename(p) for p in mini_batch]",
        "return [open(p).read().strip() for p in mini_batch]"))
    cmd = CLI + [str(script), "--input", str(runner.inputs), "--output", str(runner.output),
                 "--mini-batch-size", "2", "--quiet"]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    (runner.marks / "calls").write_text("")
    changed = runner.inputs / "f0007.txt"
    changed.write_text("changed content\n")
    os.utime(changed, (time.time() + 5, time.time() + 5))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "resumed" in again.stdout
    assert (runner.marks / "calls").read_text().split() == ["f0006.txt", "f0007.txt"]
    lines = output_lines(runner.output)
    assert lines[7] == "changed content" and lines[6] == "item 6" and len(lines) == 10
    assert "input files that changed" in (runner.output / "logs/sys/master_role.txt").read_text()


def test_python_api_plans_with_file_stats_so_a_changed_input_is_a_fresh_run(runner):
    make_files(runner.inputs, 4)
    script = runner.script("def run(mb):\n    return [open(p).read().strip() for p in mb]\n")
    assert runner.run(script, mini_batch_size=2).success
    changed = runner.inputs / "f0001.txt"
    changed.write_text("new\n")
    os.utime(changed, (time.time() + 5, time.time() + 5))
    again = runner.run(script, mini_batch_size=2)
    assert again.success and not again.resumed
    assert output_lines(runner.output) == ["item 0", "new", "item 2", "item 3"]


def test_cli_run_again_reruns_a_mini_batch_whose_file_changed_while_its_run_ran(runner):
    make_files(runner.inputs, 2)
    script = runner.script("""
    import time
    def run(mini_batch):
        text = open(mini_batch[0]).read().strip()
        if text == "item 0":  # another writer changes the file after run() read it
            with open(mini_batch[0], "w") as f:
                f.write("changed\\n")
            time.sleep(0.2)
        return [text]
    """)
    cmd = CLI + [str(script), "--input", str(runner.inputs), "--output", str(runner.output),
                 "--mini-batch-size", "1", "--quiet"]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    assert output_lines(runner.output) == ["item 0", "item 1"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "resumed" in again.stdout
    assert output_lines(runner.output) == ["changed", "item 1"]


def test_cli_run_again_reruns_a_mini_batch_whose_symlink_points_at_another_file(runner):
    for version in ("v1", "v2"):
        (runner.tmp / version).mkdir()
        (runner.tmp / version / "data.txt").write_text(f"{version}\n")
    runner.inputs.mkdir()
    link = runner.inputs / "data.txt"
    link.symlink_to("../v1/data.txt")
    script = runner.script("def run(mb):\n    return [open(p).read().strip() for p in mb]\n")
    cmd = CLI + [str(script), "--input", str(runner.inputs), "--output", str(runner.output),
                 "--quiet"]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    assert output_lines(runner.output) == ["v1"]
    link.unlink()
    link.symlink_to("../v2/data.txt")  # an older file than the first run's record
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "resumed" in again.stdout
    assert output_lines(runner.output) == ["v2"]


def test_cli_run_again_reruns_what_a_linked_input_folder_pointed_elsewhere_holds(runner):
    for version in ("v1", "v2"):
        (runner.tmp / version).mkdir()
        (runner.tmp / version / "data.txt").write_text(f"{version}\n")
    runner.inputs.symlink_to("v1")
    script = runner.script("def run(mb):\n    return [open(p).read().strip() for p in mb]\n")
    cmd = CLI + [str(script), "--input", str(runner.inputs), "--output", str(runner.output),
                 "--quiet"]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    runner.inputs.unlink()
    runner.inputs.symlink_to("v2")  # the same file names, older than the first run's record
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "resumed" in again.stdout
    assert output_lines(runner.output) == ["v2"]


def test_python_api_run_again_after_a_symlink_points_at_a_file_alike_is_a_fresh_run(runner):
    for version in ("v1", "v2"):
        (runner.tmp / version).mkdir()
        (runner.tmp / version / "data.txt").write_text(f"{version}\n")
        os.utime(runner.tmp / version / "data.txt", (1_000_000_000, 1_000_000_000))
    runner.inputs.mkdir()
    link = runner.inputs / "data.txt"
    link.symlink_to("../v1/data.txt")
    script = runner.script("def run(mb):\n    return [open(p).read().strip() for p in mb]\n")
    assert runner.run(script).success
    link.unlink()
    link.symlink_to("../v2/data.txt")  # same size, same time as v1/data.txt
    again = runner.run(script)
    assert again.success and not again.resumed
    assert output_lines(runner.output) == ["v2"]


def _kill_after(cmd: list[str], output, records: int) -> None:
    """Start ``cmd`` and SIGKILL it once ``records`` mini-batches have finished."""
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(_finished(output)) < records and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)  # orphaned workers die with their node (PDEATHSIG)


WRITES_INTO_ITS_FOLDER = """
import os, time
def run(mini_batch):
    time.sleep(0.1)
    with open("cache.bin", "wb") as f:  # the working folder: the script's folder
        f.write(os.urandom(64))
    with open("run.log", "a") as f:
        f.write(os.path.basename(mini_batch[0]) + "\\n")
    return [os.path.basename(p) for p in mini_batch]
"""


def test_what_the_script_writes_into_its_folder_does_not_make_a_resume_start_fresh(runner):
    make_files(runner.inputs, 20)
    script = runner.script(WRITES_INTO_ITS_FOLDER)
    (runner.scripts / "helper.py").write_text("VALUE = 1\n")
    cmd = CLI + [str(script), "--input", str(runner.inputs), "--output", str(runner.output),
                 "--mini-batch-size", "1", "--source-directory", str(runner.scripts)]
    _kill_after(cmd, runner.output, 10)
    done_before = len(_finished(runner.output))
    ran_before = len((runner.scripts / "run.log").read_text().split())

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "resumed" in again.stdout, again.stdout + again.stderr
    ran_again = len((runner.scripts / "run.log").read_text().split()) - ran_before
    assert ran_again == 20 - done_before
    assert output_lines(runner.output) == [f"f{i:04d}.txt" for i in range(20)]


def test_a_changed_helper_module_beside_the_script_makes_a_fresh_run(runner):
    make_files(runner.inputs, 20)
    script = runner.script("""
    import time
    import helper
    def run(mini_batch):
        time.sleep(0.1)
        return [helper.VALUE for p in mini_batch]
    """)
    (runner.scripts / "helper.py").write_text("VALUE = 'old'\n")
    cmd = CLI + [str(script), "--input", str(runner.inputs), "--output", str(runner.output),
                 "--mini-batch-size", "1"]
    _kill_after(cmd, runner.output, 10)
    (runner.scripts / "helper.py").write_text("VALUE = 'new'\n")

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "resumed" not in again.stdout, again.stdout
    assert output_lines(runner.output) == ["new"] * 20


def test_an_output_folder_inside_the_script_folder_is_left_out_of_its_fingerprint(runner):
    make_files(runner.inputs, 2)
    script = runner.script("def run(mb):\n    return mb\n")
    output = f"{runner.scripts}/sub/../out/"  # spelled another way than the folder's walk
    cmd = CLI + [str(script), "--input", str(runner.inputs), "--output", output,
                 "--source-directory", str(runner.scripts), "--quiet"]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    again = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "resumed" in again.stdout, again.stdout


def _stop_between_record_and_try_event(cmd: list[str], output, records: int) -> set[int]:
    """Start ``cmd``, SIGSTOP it (the node) once ``records`` mini-batches are done, let its
    workers store more records that the stopped node cannot log, then SIGKILL it: the
    mini-batches done whose tries no event logs."""
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(_finished(output)) < records and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGSTOP)  # the workers are processes of their own: they go on
    stopped_at = len(_finished(output))
    deadline = time.monotonic() + 10
    while len(_finished(output)) <= stopped_at and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # the sent-ahead mini-batches too
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)  # orphaned workers die with their node (PDEATHSIG)
    location = LocalLocation(str(output))
    logged = {t.mini_batch for t in read_events(location).tries if t.status == "ok"}
    return _finished(output) - logged


def _tries_csv(output) -> list[dict[str, str]]:
    with open(output / "logs/sys/job_report/processed_mini_batches.csv") as handle:
        return list(csv.DictReader(handle))


def _killed_cmd(runner, files: int) -> list[str]:
    make_files(runner.inputs, files)
    return CLI + [str(runner.script(SLOW_ECHO)), "--input", str(runner.inputs), "--output",
                  str(runner.output), "--mini-batch-size", "2", "--process-count-per-node", "2",
                  "--quiet"]


def test_a_resumed_node_logs_the_tries_its_killed_run_stored_but_did_not_log(runner):
    cmd = _killed_cmd(runner, 40)
    unlogged = _stop_between_record_and_try_event(cmd, runner.output, 4)
    assert unlogged  # the kill fell between records and their events

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    rows = _tries_csv(runner.output)
    assert sorted(int(r["mini_batch"]) for r in rows) == list(range(20))  # a try each, once
    assert {int(r["mini_batch"]) for r in rows if r["recovered"] == "yes"} == unlogged
    report = (runner.output / "logs/job_report.html").read_text()
    assert "20 tries of mini-batches" in report
    assert f'<span id="tries-recovered">{len(unlogged)}</span> recovered' in report
    node_logs = "".join(p.read_text() for p in (runner.output / "logs/sys/node").rglob("*.txt"))
    assert node_logs.count(" recovered=yes ") == len(unlogged)


def test_the_reducer_logs_the_tries_of_a_killed_node_that_never_came_back_once(runner):
    cmd = _killed_cmd(runner, 40)
    unlogged = _stop_between_record_and_try_event(cmd, runner.output, 4)
    assert unlogged
    location = LocalLocation(str(runner.output))
    job = location.read_json(JOB_FILE)
    plan = JobPlan(str(runner.output), 20, 40, 1, job["fingerprint"], True, 0.0)
    config = ParallelRunConfig(entry_script=str(runner.scripts / "score.py"))
    for _ in range(2):  # a reducer run again (its task cleared) logs nothing twice
        result = reduce_job(location, config, plan, [])
        rows = _tries_csv(runner.output)
        assert len(rows) == result.totals.mini_batches_done
        assert {int(r["mini_batch"]) for r in rows if r["recovered"] == "yes"} == unlogged
        assert all(r["duration_s"] == "-" for r in rows if r["recovered"] == "yes")
