"""A table job's workers are forked from a template that imported pandas and pyarrow once.

They must behave as spawned workers do: the same folder, environment and sys.path, their own
random numbers, killed for real on a timeout, a crash failing only its try, every process
they start ended, nothing left when the command is killed. Real ``parallel-run`` processes.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest
from test_containment import DAEMONS, Command, daemon_pids

ROWS = 400  # 3 mini-batches of 1KB


@pytest.fixture
def command(tmp_path: Path):
    cmd = Command(tmp_path)
    yield cmd
    for proc in cmd.processes():  # a failed test leaves nothing running either
        proc.kill()


def table(command: Command) -> None:
    with open(command.inputs / "t.csv", "w") as handle:
        handle.write("id,x\n")
        handle.writelines(f"{i},{i * 2}\n" for i in range(ROWS))


def ids(command: Command) -> list[str]:
    return (command.output / "parallel_run_step.txt").read_text().split()


def run_table(command: Command, script: Path, *options: object):
    return command.run(script, "--input-type", "csv", "--mini-batch-size", "1KB",
                       "--process-count-per-node", 2, *options)


def reports(command: Command, prefix: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in command.marks_named(prefix)]


REPORT = """
import json, os, sys, time
LOADED_AFTER_CPU_S = time.process_time()

def report(name):
    with open(os.path.join(MARKS, f"{name}-{os.getpid()}"), "w") as handle:
        json.dump(dict(INFO, cwd=os.getcwd(), path=sys.path, cpu=LOADED_AFTER_CPU_S,
                       pandas="pandas" in sys.modules,
                       env={k: v for k, v in os.environ.items() if k != "PARALLEL_RUN_WORKER"}),
                  handle)

INFO = {}

def init():
    import random
    INFO["random"] = random.random()
    if "numpy" in sys.modules:
        import numpy
        INFO["numpy_random"] = float(numpy.random.rand())
    report("init")

def run(mini_batch):
    time.sleep(0.2)  # both workers get a mini-batch
    return mini_batch[["id"]] if hasattr(mini_batch, "columns") else mini_batch
"""


def test_table_workers_start_with_pandas_imported_already(command):
    table(command)
    proc = run_table(command, command.script(REPORT))
    assert proc.returncode == 0, proc.stderr
    workers = reports(command, "init-")
    assert len(workers) == 2
    # Importing pandas and pyarrow takes a spawned worker about a third of a CPU-second.
    assert all(w["pandas"] and w["cpu"] < 0.1 for w in workers), workers
    assert ids(command) == [str(i) for i in range(ROWS)]


def test_file_job_workers_do_not_import_pandas(command):
    command.files(2)
    proc = command.run(command.script(REPORT), "--mini-batch-size", 1)
    assert proc.returncode == 0, proc.stderr
    assert [w["pandas"] for w in reports(command, "init-")] == [False]


def test_a_forked_worker_sees_the_folder_environment_and_sys_path_of_a_spawned_one(command):
    table(command)
    script = command.script(REPORT)
    assert run_table(command, script).returncode == 0
    forked = reports(command, "init-")[0]
    command.output = command.tmp / "files-out"
    proc = command.run(script)  # a file job over the same folder: its worker is spawned
    assert proc.returncode == 0, proc.stderr
    spawned_report = next(r for r in reports(command, "init-") if not r["pandas"])
    for key in ("cwd", "path", "env"):
        assert forked[key] == spawned_report[key], key


def test_each_forked_worker_draws_its_own_random_numbers(command):
    table(command)
    assert run_table(command, command.script(REPORT)).returncode == 0
    first, second = reports(command, "init-")
    assert first["random"] != second["random"]
    assert first["numpy_random"] != second["numpy_random"]


def test_a_table_run_past_its_timeout_is_killed_and_retried_in_a_fresh_worker(command):
    table(command)
    script = command.script("""
    import os, time

    def run(mini_batch):
        mark = os.path.join(MARKS, "hung")
        if int(mini_batch["id"].iloc[0]) == 0 and not os.path.exists(mark):
            with open(mark, "w") as handle:
                handle.write(str(os.getpid()))
            time.sleep(10_000)
        return mini_batch[["id"]]
    """)
    proc = run_table(command, script, "--run-invocation-timeout", 2, "--run-max-try", 2)
    assert proc.returncode == 0, proc.stderr
    hung = int((command.marks / "hung").read_text())
    assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE
    assert ids(command) == [str(i) for i in range(ROWS)]


def test_a_table_worker_that_crashes_fails_only_its_try_and_its_signal_is_logged(command):
    table(command)
    script = command.script("""
    import os, signal

    def run(mini_batch):
        mark = os.path.join(MARKS, "crashed")
        if int(mini_batch["id"].iloc[0]) == 0 and not os.path.exists(mark):
            open(mark, "w").close()
            os.kill(os.getpid(), signal.SIGSEGV)
        return mini_batch[["id"]]
    """)
    proc = run_table(command, script, "--run-max-try", 2)
    assert proc.returncode == 0, proc.stderr
    assert ids(command) == [str(i) for i in range(ROWS)]
    logs = "".join(p.read_text() for p in (command.output / "logs").rglob("*.txt"))
    assert "killed by signal SIGSEGV" in logs


def test_a_table_run_past_the_memory_limit_fails_its_try_and_the_node_goes_on(command):
    table(command)
    script = command.script("""
    def run(mini_batch):
        if int(mini_batch["id"].iloc[0]) == 0:
            hog = []
            while True:
                hog.append(bytearray(10 * 1024 * 1024))
        return mini_batch[["id"]]
    """)
    run_table(command, script, "--worker-memory-limit", 1500, "--run-max-try", 1)
    errors = (command.output / "logs" / "user" / "error.txt").read_text()
    assert "memory limit of 1500 MB exceeded (MemoryError" in errors
    assert "0" not in ids(command) and str(ROWS - 1) in ids(command)


PYTHON_DAEMON = """
def python_daemon(path):  # forked twice, never exec'd: only its tag says whose it is
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            _written(path, os.getpid())
            time.sleep(120)
            os._exit(0)
        os._exit(0)
    os.waitpid(middle, 0)
    while not os.path.exists(path):
        time.sleep(0.01)
"""


@pytest.mark.parametrize("kind", ["double_fork", "python"])
def test_daemons_of_a_table_run_end_with_the_job(command, kind):
    table(command)
    script = command.script(DAEMONS + PYTHON_DAEMON + f"""
def run(mini_batch):
    {kind}_daemon(os.path.join(MARKS, f"daemon-{{mini_batch['id'].iloc[0]}}"))
    return mini_batch[["id"]]
""")
    proc = run_table(command, script)
    assert proc.returncode == 0, proc.stderr
    assert len(daemon_pids(command)) == 3
    command.assert_nothing_left()


def test_killing_the_command_leaves_no_template_and_no_worker(command):
    table(command)
    script = command.script("""
    import os, time

    def run(mini_batch):
        open(os.path.join(MARKS, f"running-{os.getpid()}"), "w").close()
        time.sleep(10_000)
    """)
    proc = command.start(script, "--input-type", "csv", "--mini-batch-size", "1KB",
                         "--process-count-per-node", 2)
    deadline = time.monotonic() + 30
    while len(command.marks_named("running-")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(command.processes()) >= 4  # the command, the template, two workers
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 10
    while command.processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    command.assert_nothing_left(temp_folders=False)


def test_planning_a_parquet_input_imports_neither_pandas_nor_pyarrow_in_the_command(command):
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(ROWS))}), command.inputs / "t.parquet",
                   row_group_size=100)
    script = command.script("def run(mini_batch):\n    return mini_batch[['id']]\n")
    args = command.args(script, "--input-type", "parquet", "--mini-batch-size", "1KB")
    proc = subprocess.run([sys.executable, "-X", "importtime", *args[1:]], capture_output=True,
                          text=True, env=command.env(), timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "airflow_parallel_run.inputs.tabular.parquet_footer" in imported  # it planned here
    assert not {name for name in imported if name.split(".")[0] in ("pandas", "pyarrow")}
    assert ids(command) == [str(i) for i in range(ROWS)]


POOL = """
import os, pyarrow

def run(mini_batch):
    with open(os.path.join(MARKS, f"pool-{os.getpid()}"), "w") as handle:
        handle.write(pyarrow.default_memory_pool().backend_name)
    return mini_batch[["id"]]
"""


def test_table_workers_give_pyarrow_s_buffers_back_to_the_system_allocator(command):
    table(command)
    proc = run_table(command, command.script(POOL))
    assert proc.returncode == 0, proc.stderr
    assert {p.read_text() for p in command.marks_named("pool-")} == {"system"}


def test_a_pyarrow_memory_pool_the_user_names_wins(command):
    table(command)
    proc = run_table(command, command.script(POOL),
                     "--environment-variable", "ARROW_DEFAULT_MEMORY_POOL=jemalloc")
    assert proc.returncode == 0, proc.stderr
    assert {p.read_text() for p in command.marks_named("pool-")} == {"jemalloc"}


def test_workers_are_spawned_when_the_template_is_gone(command):
    table(command)
    script = command.script("""
    import os, sys, psutil

    def run(mini_batch):
        mark = os.path.join(MARKS, "template-killed")
        if not os.path.exists(mark):
            open(mark, "w").close()
            for sibling in psutil.Process(os.getppid()).children():
                if "airflow_parallel_run.engine.template" in sibling.cmdline():
                    sibling.kill()
            os._exit(1)  # the node starts another worker, from no template now
        return mini_batch[["id"]]
    """)
    proc = run_table(command, script, "--run-max-try", 2)
    assert proc.returncode == 0, proc.stderr
    assert ids(command) == [str(i) for i in range(ROWS)]
    command.assert_nothing_left()
