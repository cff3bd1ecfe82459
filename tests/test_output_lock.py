"""One output, one job: ``parallel-run`` processes into one output folder.

A second run (of another job, or of the same one) is refused while the first lives; a fresh
run clears the previous job's result before any work; a run after a killed one cleans what
the killed one left. Scripts block in ``run()`` while a ``hold`` file exists, so a run is
caught in the middle without guessing at timings.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support import CLI, make_files

SCRIPT = """
import os, time
JOB = {job!r}
MARKS = {marks!r}
HOLD = {hold!r}

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    with open(MARKS, "a") as f:
        f.write("".join(f"{{JOB}} {{os.environ.get('RUN_TAG', '-')}} {{n}}\\n" for n in names))
    while os.path.exists(HOLD):
        time.sleep(0.02)
    return [f"{{JOB}} {{n}}" for n in names]
"""


class Folder:
    """An input of tiny files, an output, jobs A and B (scripts in folders of their own)."""

    def __init__(self, tmp: Path, files: int = 12) -> None:
        self.tmp = tmp
        self.inputs = tmp / "in"
        self.out = tmp / "out"
        self.marks = tmp / "marks.txt"
        self.hold = tmp / "hold"
        self.temp = tmp / "temp"  # the runs' temp directory (TMPDIR)
        self.temp.mkdir()
        self.names = [p.name for p in make_files(self.inputs, files)]
        self.scripts = {job: self._script(job) for job in "AB"}

    def _script(self, job: str) -> Path:
        folder = self.tmp / f"job{job}"
        folder.mkdir()
        path = folder / "score.py"
        path.write_text(textwrap.dedent(SCRIPT.format(job=job, marks=str(self.marks),
                                                      hold=str(self.hold))))
        return path

    def start(self, job: str, tag: str = "-", processes: int = 2) -> subprocess.Popen:
        env = {**os.environ, "RUN_TAG": tag, "TMPDIR": str(self.temp)}
        env.pop("PYTHONWARNINGS", None)
        return subprocess.Popen(
            [*CLI, str(self.scripts[job]), "--input", str(self.inputs), "--output", str(self.out),
             "--mini-batch-size", "2", "--process-count-per-node", str(processes), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def marks_of(self, tag: str | None = None) -> list[str]:
        lines = self.marks.read_text().splitlines() if self.marks.exists() else []
        return [line for line in lines if tag is None or line.split()[1] == tag]

    def wait_for_marks(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.marks_of()) < count:
            assert time.monotonic() < deadline, f"no run() call after {timeout} s"
            time.sleep(0.02)

    def output(self) -> list[str]:
        return (self.out / "parallel_run_step.txt").read_text().splitlines()


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    return Folder(tmp_path)


def assert_refused_by(result: tuple[int, str, str], holder: subprocess.Popen) -> None:
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err
    assert (f"output folder in use by {socket.gethostname()} pid {holder.pid} since "
            in err), err


# -- point 1: one live job per output ----------------------------------------------------------


def test_another_job_into_a_live_output_is_refused_and_the_output_stays_the_first_jobs(folder):
    folder.hold.touch()
    first = folder.start("A")
    folder.wait_for_marks(1)

    assert_refused_by(finish(folder.start("B")), first)

    folder.hold.unlink()
    code, _, err = finish(first)
    assert code == 0, err
    assert folder.output() == [f"A {name}" for name in folder.names]
    assert not [m for m in folder.marks_of() if m.startswith("B ")]


def test_the_same_job_started_twice_is_refused_and_runs_no_mini_batch_twice(folder):
    folder.hold.touch()
    first = folder.start("A", "first")
    folder.wait_for_marks(1)

    assert_refused_by(finish(folder.start("A", "second")), first)

    folder.hold.unlink()
    assert finish(first)[0] == 0
    assert sorted(m.split()[2] for m in folder.marks_of()) == folder.names
    assert not folder.marks_of("second")


def test_the_lock_is_released_when_a_run_ends_on_sigterm(folder):
    folder.hold.touch()
    first = folder.start("A")
    folder.wait_for_marks(1)
    assert (folder.out / ".parallel_run.lock").exists()

    first.send_signal(signal.SIGTERM)
    folder.hold.unlink()
    finish(first)

    assert not (folder.out / ".parallel_run.lock").exists()


# -- point 2: a fresh run clears the previous job's result ---------------------------------------


def assert_no_result_of_an_earlier_job(folder: Folder) -> None:
    assert not (folder.out / "parallel_run_step.txt").exists()
    assert not (folder.out / "logs" / "job_result.txt").exists()
    assert not (folder.out / "logs" / "job_result.json").exists()
    said = (folder.out / "logs" / "sys" / "master_role.txt").read_text()
    assert "fresh run: removed the previous job's " in said
    assert "parallel_run_step.txt before any work started" in said


def test_another_job_killed_half_way_leaves_no_output_of_the_job_before(folder):
    assert finish(folder.start("A"))[0] == 0
    folder.hold.touch()
    second = folder.start("B", "b")
    while not folder.marks_of("b"):
        time.sleep(0.02)

    kill(second)

    assert_no_result_of_an_earlier_job(folder)


def test_a_run_over_a_changed_input_killed_half_way_leaves_no_old_result(folder):
    assert finish(folder.start("A"))[0] == 0
    make_files(folder.inputs, 2, prefix="new")
    folder.hold.touch()
    second = folder.start("A", "again")
    while not folder.marks_of("again"):
        time.sleep(0.02)

    kill(second)

    assert_no_result_of_an_earlier_job(folder)


def test_a_run_into_an_output_whose_state_was_deleted_clears_the_old_result(folder):
    assert finish(folder.start("A"))[0] == 0
    subprocess.run(["rm", "-r", str(folder.out / ".parallel_run")], check=True)
    folder.hold.touch()
    second = folder.start("B", "b")
    while not folder.marks_of("b"):
        time.sleep(0.02)

    kill(second)

    assert_no_result_of_an_earlier_job(folder)


# -- point 10: what a killed run left, the next run cleans -----------------------------------------

PLANNER = """
import os, sys, time
from airflow_parallel_run import FileDataset, ParallelRunConfig
from airflow_parallel_run.engine.job import Job
from airflow_parallel_run.leases import OutputLock

script, inputs, out, ready = sys.argv[1:]
job = Job(ParallelRunConfig(entry_script=script, mini_batch_size=1),
          [FileDataset.from_files(inputs)], out)
OutputLock(job.location, "planner killed while planning").acquire()

def stuck(batch):  # the planner is killed while it writes the plan
    if batch.index == 3:
        open(ready, "w").close()
        time.sleep(3600)

job.plan(on_batch=stuck)
"""


def test_a_plan_left_by_a_run_killed_while_planning_is_removed_by_the_next_run(folder):
    ready = folder.tmp / "ready"
    planner = subprocess.Popen([sys.executable, "-c", PLANNER, str(folder.scripts["A"]),
                                str(folder.inputs), str(folder.out), str(ready)])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline and planner.poll() is None
        time.sleep(0.02)
    kill(planner)
    assert (folder.out / ".parallel_run" / f"plan.new-{planner.pid}").is_dir()

    code, _, err = finish(folder.start("A"))

    assert code == 0, err
    assert not [n for n in os.listdir(folder.out / ".parallel_run") if n.startswith("plan.new")]


def test_node_folders_and_temp_files_of_a_killed_run_are_removed_by_the_next_run(folder):
    folder.hold.touch()
    first = folder.start("A")
    folder.wait_for_marks(1)
    kill(first)
    left = [n for n in os.listdir(folder.temp) if n.startswith("parallel-run-node")]
    assert left, "the killed run had a node folder"
    # what a reducer killed while it assembled the output leaves beside it
    (folder.out / f".parallel_run_step.txt.{first.pid}-0a1b2c3d.tmp").write_text("A f0000.txt\n")
    folder.hold.unlink()

    code, _, err = finish(folder.start("A"))

    assert code == 0, err
    assert not [n for n in os.listdir(folder.temp) if n.startswith("parallel-run-")]
    assert not [n for n in os.listdir(folder.out) if n.endswith(".tmp")]


# -- many runs at random moments -----------------------------------------------------------------


def run_round(folder: Folder, round_: int) -> list[tuple[float, str, str, int, str]]:
    """5 runs of A and B started at random moments: (end, job, tag, exit, stdout+stderr) each."""
    rng = random.Random(round_)
    running = []
    for i, job in enumerate(["A", "B", "A", "B", rng.choice("AB")]):
        time.sleep(rng.uniform(0, 0.15))
        running.append((job, f"r{round_}-{i}", folder.start(job, f"r{round_}-{i}", 1)))
    ended = []
    deadline = time.monotonic() + 60
    while running:
        assert time.monotonic() < deadline, "runs that do not end"
        for entry in [e for e in running if e[2].poll() is not None]:
            job, tag, proc = entry
            out, err = proc.communicate()
            ended.append((time.monotonic(), job, tag, proc.returncode, out + err))
            running.remove(entry)
        time.sleep(0.005)
    return ended


@pytest.mark.slow
def test_runs_of_two_jobs_at_random_moments_each_finish_whole_or_are_refused(tmp_path):
    folder = Folder(tmp_path, files=6)
    last_full = None  # the job of the last run that ran every item
    for round_ in range(20):
        full: list[tuple[int, str, str]] = []  # (first mark, job, tag) of runs that ran all
        resumed: list[tuple[str, str]] = []  # (job, tag) of runs that ran nothing
        for _, job, tag, code, text in sorted(run_round(folder, round_)):
            ran = sorted(m.split()[2] for m in folder.marks_of(tag))
            assert code in (0, 2), f"{tag}: exit {code}\n{text}"
            if code == 2:
                assert "output folder in use by " in text, text
                assert not ran, f"{tag} was refused, yet ran {ran}"
                continue
            assert "SUCCESS: 6 items succeeded, 0 failed" in text, text
            assert ran in ([], folder.names), f"{tag} ran {ran}: not whole"
            if ran:
                full.append((_first_mark(folder, tag), job, tag))
            else:
                resumed.append((job, tag))
        jobs_run = {last_full}
        # the runs that ran every item, in the order they held the output (their marks' order:
        # a process may end later than the run after it started, so exit order is not it):
        # after a run of a job comes another job's run, or a resume that runs nothing
        for _, job, tag in sorted(full):
            assert job != last_full, f"{tag}: ran every item of {job} again after a run of {job}"
            last_full = job
            jobs_run.add(job)
        for job, tag in resumed:  # a run that resumed: a run of its job came before it
            assert job in jobs_run, f"{tag} ran nothing, yet no run of {job} came before it"
        assert folder.output() == [f"{last_full} {n}" for n in folder.names], f"round {round_}"


def _first_mark(folder: Folder, tag: str) -> int:
    return next(i for i, line in enumerate(folder.marks_of()) if line.split()[1] == tag)
