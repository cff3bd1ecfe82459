"""Nothing escapes a job: bounded workers, every process a run() starts ended, memory
bounded, interruptions that end cleanly. Real ``parallel-run`` processes, checked with psutil.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest

CLI = [sys.executable, "-m", "airflow_parallel_run"]


class Command:
    """``parallel-run`` over files in ``tmp_path`` with its own TMPDIR, and a tag in its
    environment that every process of the job inherits: how the tests find them all."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.inputs = tmp_path / "in"
        self.output = tmp_path / "out"
        self.marks = tmp_path / "marks"
        self.tmpdir = tmp_path / "tmp"
        for folder in (self.inputs, self.marks, self.tmpdir):
            folder.mkdir()
        self.tag = f"job-{uuid.uuid4().hex}"

    def files(self, count: int) -> None:
        for i in range(count):
            (self.inputs / f"f{i:04d}.txt").write_text(f"item {i}\n")

    def script(self, body: str) -> Path:
        path = self.tmp / "score.py"
        path.write_text(textwrap.dedent(body).replace("MARKS", repr(str(self.marks))))
        return path

    def env(self) -> dict[str, str]:
        env = dict(os.environ, TMPDIR=str(self.tmpdir), TEST_JOB_TAG=self.tag)
        env.pop("PYTHONWARNINGS", None)
        return env

    def args(self, script: Path, *options: object) -> list[str]:
        return [*CLI, str(script), "--input", str(self.inputs), "--output", str(self.output),
                "--quiet", *map(str, options)]

    def run(self, script: Path, *options: object, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.args(script, *options), capture_output=True, text=True,
                              env=self.env(), timeout=timeout)

    def start(self, script: Path, *options: object, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.args(script, *options), text=True, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)

    def processes(self) -> list[psutil.Process]:
        """Every live process of the job (zombies are dead), found by the tag."""
        found = []
        for proc in psutil.process_iter():
            try:
                if (proc.status() != psutil.STATUS_ZOMBIE
                        and proc.environ().get("TEST_JOB_TAG") == self.tag):
                    found.append(proc)
            except psutil.Error:
                pass
        return found

    def assert_nothing_left(self, temp_folders: bool = True) -> None:
        """No process of the job; no temp folder (unless a node was killed -9: its folder is
        not ours to judge here)."""
        left = self.processes()
        assert not left, f"processes of the job left: {[(p.pid, p.cmdline()) for p in left]}"
        if temp_folders:
            assert not os.listdir(self.tmpdir), f"temp folders left: {os.listdir(self.tmpdir)}"

    def marks_named(self, prefix: str) -> list[Path]:
        return sorted(p for p in self.marks.iterdir() if p.name.startswith(prefix))


@pytest.fixture
def command(tmp_path: Path):
    cmd = Command(tmp_path)
    yield cmd
    for proc in cmd.processes():  # a failed test leaves nothing running either
        proc.kill()


INIT_MARKS = """
import os

def init():
    open(os.path.join(MARKS, f"init-{os.getpid()}"), "w").close()

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""


# -- bounded workers -----------------------------------------------------------------------------

def test_many_nodes_on_one_mini_batch_start_one_worker(command):
    command.files(1)
    proc = command.run(command.script(INIT_MARKS), "--node-count", 50)
    assert proc.returncode == 0, proc.stderr
    assert len(command.marks_named("init-")) == 1
    command.assert_nothing_left()


def test_many_processes_on_one_mini_batch_start_one_worker(command):
    command.files(1)
    proc = command.run(command.script(INIT_MARKS), "--process-count-per-node", 8)
    assert proc.returncode == 0, proc.stderr
    assert len(command.marks_named("init-")) == 1


def test_more_processes_than_the_node_can_hold_are_refused_with_the_rule(command):
    command.files(1)
    proc = command.run(command.script(INIT_MARKS), "--process-count-per-node", 100000)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    cpus = len(os.sched_getaffinity(0))
    assert (f"process_count_per_node = 100000: must be at most 16 x the node's CPUs = "
            f"{16 * cpus}") in proc.stderr
    assert not command.marks_named("init-")


# -- interruptions ---------------------------------------------------------------------------------

SLOW_RUN = """
import os, time

def run(mini_batch):
    open(os.path.join(MARKS, f"run-{os.getpid()}-{time.monotonic()}"), "w").close()
    time.sleep(0.5)
    return [os.path.basename(p) for p in mini_batch]
"""


def wait_for(condition, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_ctrl_c_stops_the_job_with_a_summary_a_job_result_and_no_temp_folder(command):
    import signal

    command.files(20)
    proc = command.start(command.script(SLOW_RUN), "--mini-batch-size", 1)
    wait_for(lambda: command.marks_named("run-"))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert "FAILED" in out and "interrupted" in out
    assert (command.output / "logs" / "job_result.txt").is_file()
    command.assert_nothing_left()


def test_output_piped_into_a_reader_that_is_gone_ends_quietly(command):
    command.files(3)
    proc = command.start(command.script(INIT_MARKS))
    proc.stdout.close()  # as `| head -0` does
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert (command.output / "parallel_run_step.txt").is_file()


def test_a_shutdown_that_hangs_is_killed_and_logged(tmp_path, monkeypatch):
    from airflow_parallel_run import FileDataset, ParallelRunConfig, run_job
    from airflow_parallel_run.engine import node

    monkeypatch.setattr(node, "SHUTDOWN_GRACE", 1.0)
    command = Command(tmp_path)
    command.files(1)
    script = command.script("""
    import time

    def run(mini_batch):
        return mini_batch

    def shutdown():
        time.sleep(10_000)
    """)
    result = run_job(ParallelRunConfig(entry_script=str(script)),
                     [FileDataset.from_files(str(command.inputs))], str(command.output))
    assert result.success
    logs = command.output / "logs" / "sys"
    expected = "shutdown() did not return within 1 s; its worker pid="
    assert expected in (logs / "master_role.txt").read_text()
    assert any(expected in p.read_text() for p in (logs / "node").rglob("*.txt"))


# -- memory --------------------------------------------------------------------------------------

def test_a_run_past_the_memory_limit_fails_its_try_and_the_node_goes_on(command):
    command.files(2)
    script = command.script("""
    import os

    def run(mini_batch):
        if mini_batch[0].endswith("f0000.txt"):
            hog = []
            while True:
                hog.append(bytearray(10 * 1024 * 1024))
        return [os.path.basename(p) for p in mini_batch]
    """)
    proc = command.run(script, "--worker-memory-limit", 200, "--mini-batch-size", 1,
                       "--run-max-try", 2)
    assert "Traceback" not in proc.stderr
    errors = (command.output / "logs" / "user" / "error.txt").read_text()
    assert "memory limit of 200 MB exceeded (MemoryError" in errors
    assert (command.output / "parallel_run_step.txt").read_text() == "f0001.txt\n"
    assert "1 failed" in proc.stdout or "failed: 1" in proc.stdout, proc.stdout


def test_a_memory_limit_too_small_for_a_worker_is_refused_with_the_rule(command):
    command.files(1)
    proc = command.run(command.script(INIT_MARKS), "--worker-memory-limit", 10)
    assert proc.returncode == 2
    assert "worker_memory_limit = 10: must be None or a whole number of MB >= 64" in proc.stderr


# -- every process a run() started ends ------------------------------------------------------------

DAEMONS = """
import os, subprocess, sys, time

def _written(path, pid):
    with open(path + ".tmp", "w") as handle:
        handle.write(str(pid))
    os.rename(path + ".tmp", path)

def double_fork_daemon(path):
    middle = os.fork()
    if middle == 0:
        os.setsid()
        grandchild = os.fork()
        if grandchild == 0:
            os.execvp("sleep", ["sleep", "120"])
        _written(path, grandchild)
        os._exit(0)
    os.waitpid(middle, 0)

def setsid_daemon(path):
    subprocess.run(["setsid", "sh", "-c", f"sleep 120 & echo $! > {path}.tmp; mv {path}.tmp {path}"])
    while not os.path.exists(path):
        time.sleep(0.01)

def alive(path):
    pid = int(open(path).read())
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
"""


def daemon_pids(command: Command) -> list[int]:
    return [int(p.read_text()) for p in command.marks_named("daemon-") if not p.name.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["setsid", "double_fork"])
def test_daemons_of_a_run_that_timed_out_end_before_its_retry(command, kind):
    command.files(1)
    script = command.script(DAEMONS + f"""
def run(mini_batch):
    path = os.path.join(MARKS, "daemon-1")
    if not os.path.exists(path):
        {kind}_daemon(path)
        time.sleep(10_000)
    return ["alive" if alive(path) else "gone"]
""")
    proc = command.run(script, "--run-invocation-timeout", 1)
    assert proc.returncode == 0, proc.stderr
    assert (command.output / "parallel_run_step.txt").read_text() == "gone\n"
    command.assert_nothing_left()


@pytest.mark.parametrize("kind", ["setsid", "double_fork"])
def test_daemons_of_a_run_end_with_the_job(command, kind):
    command.files(2)
    script = command.script(DAEMONS + f"""
def run(mini_batch):
    {kind}_daemon(os.path.join(MARKS, f"daemon-{{os.path.basename(mini_batch[0])}}"))
    return mini_batch
""")
    proc = command.run(script, "--mini-batch-size", 1)
    assert proc.returncode == 0, proc.stderr
    assert len(daemon_pids(command)) == 2
    command.assert_nothing_left()


def test_daemons_left_by_a_killed_command_are_ended_by_the_next_run(command):
    import json
    import signal

    command.files(1)
    script = command.script(DAEMONS + """
def run(mini_batch):
    path = os.path.join(MARKS, "daemon-1")
    if not os.path.exists(path):
        double_fork_daemon(path)
        time.sleep(10_000)
    return mini_batch
""")
    proc = command.start(script)
    record = command.output / ".parallel_run" / "processes" / "node-0.json"

    def recorded() -> bool:
        try:
            return bool(daemon_pids(command)) and daemon_pids(command)[0] in [
                pid for pid, _ in json.loads(record.read_text())["processes"]]
        except (OSError, ValueError):
            return False

    wait_for(recorded)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert psutil.pid_exists(daemon_pids(command)[0])  # the kill left it running
    again = command.run(script)
    assert again.returncode == 0, again.stderr
    command.assert_nothing_left(temp_folders=False)


# -- chaos -------------------------------------------------------------------------------------------

CALLS = DAEMONS + """
def run(mini_batch):
    name = os.path.basename(mini_batch[0])
    fd = os.open(os.path.join(MARKS, "calls"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{os.getpid()} {name}\\n".encode())
    os.close(fd)
    if name in ("f0100.txt", "f0300.txt", "f0500.txt", "f1500.txt"):  # daemons to be ended too
        double_fork_daemon(os.path.join(MARKS, f"daemon-{name}-{time.monotonic()}"))
    time.sleep(0.005)
    return [name]
"""


class Killer:
    """SIGKILLs a random worker that is running mini-batches every 0.5 s; keeps count of the
    mini-batches each kill may have hit (the last one its worker started)."""

    def __init__(self, command: Command) -> None:
        self.command = command
        self.hits: dict[str, int] = {}
        self.kills = 0

    def calls(self) -> list[tuple[int, str]]:
        path = self.command.marks / "calls"
        text = path.read_text() if path.exists() else ""
        return [(int(pid), name) for pid, name in
                (line.split() for line in text.splitlines() if line.count(" ") == 1)]

    def hit(self, pids: set[int]) -> None:
        """``pids`` are dead: the last mini-batch each started may not have finished."""
        last = {pid: name for pid, name in self.calls() if pid in pids}
        for name in last.values():
            self.hits[name] = self.hits.get(name, 0) + 1

    def kill_one(self, proc: subprocess.Popen) -> None:
        import random

        working = {pid for pid, _ in self.calls()}
        live = [p for p in self.command.processes() if p.pid in working]
        if not live:
            return
        victim = random.choice(live)
        victim.kill()
        psutil.wait_procs([victim], timeout=5)
        self.kills += 1
        self.hit({victim.pid})

    def command_killed(self) -> None:
        working = {pid for pid, _ in self.calls()}
        wait_for(lambda: not [p for p in self.command.processes() if p.pid in working])
        self.hit(working)  # the workers died with it

    def until_done(self, proc: subprocess.Popen, deadline: float, kill_command_at: int | None) -> None:
        import time

        while proc.poll() is None:
            assert time.monotonic() < deadline, "the chaos test ran out of time"
            time.sleep(0.5)
            if kill_command_at is not None and len(self.calls()) >= kill_command_at:
                proc.kill()
                proc.wait()
                self.command_killed()
                return
            self.kill_one(proc)


@pytest.mark.slow
def test_chaos_kills_lose_nothing_repeat_nothing_and_leave_nothing(command):
    import collections
    import time

    deadline = time.monotonic() + 120
    command.files(2000)
    script = command.script(CALLS)
    options = ("--mini-batch-size", 1, "--process-count-per-node", 2)
    killer = Killer(command)
    first = command.start(script, *options)
    killer.until_done(first, deadline, kill_command_at=1000)
    assert first.returncode == -9, "the command ended before it was killed"
    resumed = command.start(script, *options)
    killer.until_done(resumed, deadline, kill_command_at=None)
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert killer.kills >= 5
    expected = [f"f{i:04d}.txt" for i in range(2000)]
    assert (command.output / "parallel_run_step.txt").read_text().splitlines() == expected
    calls = collections.Counter(name for _, name in killer.calls())
    too_many = {name: (n, killer.hits.get(name, 0)) for name, n in calls.items()
                if n > 3 + killer.hits.get(name, 0)}
    assert not too_many, too_many
    assert len(daemon_pids(command)) >= 4
    command.assert_nothing_left(temp_folders=False)


def test_a_node_refuses_more_processes_than_its_cpus_allow_before_any_starts(command):
    from airflow_parallel_run import FileDataset, ParallelRunConfig
    from airflow_parallel_run.engine.job import Job
    from airflow_parallel_run.errors import ConfigError

    command.files(1)
    config = ParallelRunConfig(entry_script=str(command.script(INIT_MARKS)),
                               process_count_per_node=100000)
    job = Job(config, [FileDataset.from_files(str(command.inputs))], str(command.output))
    job_plan = job.plan()  # the planner may run on another machine: it does not check
    with pytest.raises(ConfigError, match="process_count_per_node = 100000: must be at most 16 x"):
        job.run_node(job_plan, 0)
    assert not command.marks_named("init-")


def test_leftovers_recorded_by_a_node_still_alive_are_not_ended(tmp_path):
    import socket

    from airflow_parallel_run.engine.reaper import end_leftovers, record_path
    from airflow_parallel_run.storage import LocalLocation

    location = LocalLocation(str(tmp_path))
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        created = psutil.Process(sleeper.pid).create_time()
        gone = subprocess.Popen(["true"])
        gone.wait()
        for owner, ended in ([os.getpid(), psutil.Process().create_time()], 0), ([gone.pid, 1.0], 1):
            location.write_json(record_path(0), {"host": socket.gethostname(), "owner": owner,
                                                 "processes": [[sleeper.pid, created]]})
            assert end_leftovers(location) == ended
            assert (sleeper.poll() is None) == (ended == 0)  # running while its node lives
    finally:
        sleeper.kill()
        sleeper.wait()
