"""What a job's files may hold and who may change them: secrets never reach a file, even when
the command is killed; other processes' command lines stay out of the process table; nothing
is group- or other-writable; record logs the job did not write are not its results."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

from support import CLI, make_files, output_lines, write_script

from airflow_parallel_run.masking import Masker
from airflow_parallel_run.monitor import process_table

SECRET = "tok-9f8e7d6c5b4a"


def parallel_run(*args: object, env: dict[str, str] | None = None,
                 **popen: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, **popen)  # type: ignore[call-overload]


def files_holding(text: str, *folders: Path) -> list[str]:
    found = subprocess.run(["grep", "-rl", text, *map(str, folders)], capture_output=True, text=True)
    return found.stdout.split()


def test_the_process_table_shows_command_lines_of_the_jobs_processes_only(tmp_path):
    import psutil

    own = subprocess.Popen(["sleep", "30.25"])
    # a process that is not ours: the one that started this one (an orphan of ours would come
    # back to us, as this process may have become a child subreaper by running a node)
    other = os.getppid()
    try:
        table = process_table().splitlines()
    finally:
        own.kill()
        own.wait()
    by_pid = {line.split()[0]: line for line in table[2:]}
    assert by_pid[str(own.pid)].endswith(" sleep 30.25")
    assert by_pid[str(other)].endswith(f" [{psutil.Process(other).name()}]")


def test_secret_env_is_masked_everywhere_and_reaches_the_workers(tmp_path):
    make_files(tmp_path / "in", 4)
    script = write_script(tmp_path, """
        import os, sys
        def run(mini_batch):
            token = os.environ["API_TOKEN"]
            print("token is", token)
            print("password is", sys.argv[-1], file=sys.stderr)
            return [token == EXPECTED for _ in mini_batch]
    """.replace("EXPECTED", repr(SECRET)))
    out = tmp_path / "out"
    proc = parallel_run(script, "--input", tmp_path / "in", "--output", out, "--mini-batch-size", 2,
                        "--secret-env", "API_TOKEN", "--environment-variable", "DB_PASSWORD=pw-4242x",
                        "--resource-monitor-interval", 0.2, "--", "--password", SECRET,
                        env={"API_TOKEN": SECRET})
    assert proc.returncode == 0, proc.stderr
    assert output_lines(out) == ["True"] * 4
    assert list((out / "logs/perf").rglob("processes_*")), "no process table snapshot"
    assert files_holding(SECRET, out) == [] and files_holding("pw-4242x", out) == []
    stdout = "".join(p.read_text() for p in (out / "logs/user/stdout").rglob("*.txt"))
    assert "token is ***" in stdout


def test_secret_env_naming_no_variable_is_a_usage_error(tmp_path):
    make_files(tmp_path / "in", 1)
    script = write_script(tmp_path, "def run(mb):\n    return mb\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_TOKEN"}
    proc = subprocess.run([*CLI, str(script), "--input", str(tmp_path / "in"), "--output",
                           str(tmp_path / "out"), "--secret-env", "NO_SUCH_TOKEN"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("parallel-run: error: --secret-env NO_SUCH_TOKEN: "
                                   "no environment variable NO_SUCH_TOKEN is set")


LEAKY = """
import os, subprocess, sys, time
def run(mini_batch):
    token = os.environ["API_TOKEN"]
    os.write(1, ("raw " + token + "\\n").encode())
    subprocess.run(["sh", "-c", 'echo "child $API_TOKEN" >&2'])
    sys.stdout.write("split " + token[:5])
    sys.stdout.flush()
    sys.stdout.write(token[5:] + "\\n")
    sys.stdout.flush()
    open(os.path.join(MARKS, str(os.getpid())), "w").close()
    time.sleep(60)
    return mini_batch
"""


def test_a_secret_written_in_pieces_is_masked_as_a_stream():
    masker = Masker([SECRET, "tok-other"])
    text = f"a {SECRET} b tok-ot c {SECRET}".encode()
    written, held = b"", b""
    for i in range(0, len(text), 3):
        out, held = masker.mask_stream(held + text[i:i + 3])
        written += out
    written += masker.mask_bytes(held)
    assert written == b"a *** b tok-ot c ***"


def test_a_killed_command_leaves_no_secret_in_the_output_or_the_temp_dir(tmp_path):
    make_files(tmp_path / "in", 2)
    marks, temp, out = tmp_path / "marks", tmp_path / "tmp", tmp_path / "out"
    marks.mkdir()
    temp.mkdir()
    script = write_script(tmp_path, LEAKY.replace("MARKS", repr(str(marks))))
    command = subprocess.Popen(
        [*CLI, str(script), "--input", str(tmp_path / "in"), "--output", str(out), "--quiet",
         "--secret-env", "API_TOKEN", "--mini-batch-size", "1", "--process-count-per-node", "1"],
        env={**os.environ, "API_TOKEN": SECRET, "TMPDIR": str(temp)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(marks.iterdir()) and command.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert command.poll() is None, f"the command ended first (exit {command.returncode})"
    [worker] = [int(p.name) for p in marks.iterdir()]
    masked = ("raw ***", "child ***", "split ***")
    deadline = time.monotonic() + 10
    while not all(m in user_logs(out) for m in masked) and time.monotonic() < deadline:
        time.sleep(0.05)  # the node reads the pipes
    command.kill()
    command.wait()
    while os.path.exists(f"/proc/{worker}") and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker dies with the node

    assert list(temp.glob("parallel-run-node*")), "the node's cache folder is not in TMPDIR"
    assert files_holding(SECRET, out, temp) == []
    assert all(m in user_logs(out) for m in masked), user_logs(out)


def user_logs(out: Path) -> str:
    return "".join(p.read_text() for p in (out / "logs/user").rglob("*.txt"))


def test_a_job_under_umask_000_leaves_nothing_group_or_other_writable(tmp_path):
    make_files(tmp_path / "in", 3)
    script = write_script(tmp_path, "def run(mb):\n    return mb\n")
    out = tmp_path / "out"
    proc = parallel_run(script, "--input", tmp_path / "in", "--output", out, "--quiet",
                        "--mini-batch-size", 1, "--resource-monitor-interval", 0.2, umask=0)
    assert proc.returncode == 0, proc.stderr
    writable = [str(p.relative_to(tmp_path)) for p in [out, *out.rglob("*")]
                if stat.S_IMODE(p.lstat().st_mode) & 0o022]
    assert writable == []


def test_a_record_log_the_job_did_not_write_is_ignored_and_noted(runner):
    make_files(runner.inputs, 2)
    script = runner.script("import os\ndef run(mb):\n    return [os.path.basename(p) for p in mb]\n")
    assert runner.run(script, mini_batch_size=1).success
    forged = {"index": 0, "status": "ok", "total": 1, "succeeded": 1, "failed": 0, "tries": 1,
              "bytes": 7, "at": time.time_ns() + 10**12}
    evil = runner.output / ".parallel_run/results/evil.log"
    evil.write_bytes(json.dumps(forged).encode() + b"\nFORGED\n")

    result = runner.run(script, mini_batch_size=1)

    assert output_lines(runner.output) == ["f0000.txt", "f0001.txt"]
    assert any("evil.log ignored" in note for note in result.notes), result.notes
