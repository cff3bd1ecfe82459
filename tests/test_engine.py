"""The engine with real worker processes and real files."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from support import make_files, output_lines, pid_alive

from airflow_parallel_run import FileDataset
from airflow_parallel_run.results import read_record

ECHO = """
import os
def run(mini_batch):
    return [f"{os.path.basename(p)}: {open(p).read().strip()}" for p in mini_batch]
"""


def expected_lines(count: int) -> list[str]:
    return [f"f{i:04d}.txt: item {i}" for i in range(count)]


def test_every_item_appears_once_in_input_order_over_nodes_and_processes(runner):
    make_files(runner.inputs, 97)
    result = runner.run(runner.script(ECHO), mini_batch_size=4, node_count=3,
                        process_count_per_node=2)
    assert result.success, result.reason
    assert output_lines(runner.output) == expected_lines(97)
    assert result.totals.succeeded_items == 97
    assert result.mini_batch_count == 25


def test_mini_batches_follow_input_order_across_several_inputs(runner, tmp_path):
    make_files(tmp_path / "b", 3, prefix="b")
    make_files(tmp_path / "a", 3, prefix="a")
    inputs = [FileDataset.from_files(str(tmp_path / "b"), name="first"),
              FileDataset.from_files([str(tmp_path / "a" / "a0002.txt"), str(tmp_path / "a" / "a0000.txt")],
                                     name="second")]
    script = runner.script("""
    import os
    def run(mini_batch, context):
        return [f"{context.dataset} {context.minibatch_index} {os.path.basename(p)}" for p in mini_batch]
    """)
    result = runner.run(script, inputs=inputs, mini_batch_size=2, process_count_per_node=2)
    assert result.success
    assert output_lines(runner.output) == [
        "first 0 b0000.txt", "first 0 b0001.txt", "first 1 b0002.txt",
        "second 2 a0002.txt", "second 2 a0000.txt",
    ]


def test_init_runs_once_per_worker_process_and_shutdown_once_at_the_end(runner):
    make_files(runner.inputs, 40)
    script = runner.script("""
    import os
    def init():
        open(os.path.join(MARKS, f"init-{os.getpid()}"), "w").close()
    def run(mini_batch):
        open(os.path.join(MARKS, f"run-{os.getpid()}-{len(mini_batch)}-{os.urandom(4).hex()}"), "w").close()
        return mini_batch
    def shutdown():
        open(os.path.join(MARKS, f"shutdown-{os.getpid()}"), "w").close()
    """)
    result = runner.run(script, mini_batch_size=2, node_count=2, process_count_per_node=2)
    assert result.success
    inits = {p.name.split("-")[1] for p in runner.marks_named("init-")}
    runs = {p.name.split("-")[1] for p in runner.marks_named("run-")}
    shutdowns = {p.name.split("-")[1] for p in runner.marks_named("shutdown-")}
    assert len(runner.marks_named("init-")) == 4  # 2 nodes x 2 processes, one init() each
    assert runs <= inits
    assert shutdowns == inits
    assert len(runner.marks_named("run-")) == 20


def test_a_run_that_sleeps_forever_is_killed_retried_and_the_rest_finishes(runner):
    make_files(runner.inputs, 12)
    script = runner.script("""
    import os, time
    def run(mini_batch):
        first = os.path.join(MARKS, "hung-" + os.path.basename(mini_batch[0]))
        if mini_batch[0].endswith("f0004.txt") and not os.path.exists(first):
            open(first, "w").write(str(os.getpid()))
            time.sleep(10_000)
        return [os.path.basename(p) for p in mini_batch]
    """)
    started = time.monotonic()
    result = runner.run(script, mini_batch_size=2, process_count_per_node=2,
                        run_invocation_timeout=2)
    elapsed = time.monotonic() - started
    assert result.success, result.reason
    assert output_lines(runner.output) == [f"f{i:04d}.txt" for i in range(12)]
    hung_pid = int(runner.marks_named("hung-")[0].read_text())
    assert not pid_alive(hung_pid)
    assert elapsed < 2 + 5 + 5  # timeout, kill within 5 s, a few seconds of other work
    record, _ = read_record(result_location(runner), 2)
    assert record.tries == 2
    node_log = "".join(p.read_text() for p in (runner.output / "logs/sys/node").rglob("*.txt"))
    timeout_lines = [ln for ln in node_log.splitlines() if "status=timeout" in ln]
    assert len(timeout_lines) == 1 and "mini_batch=2 try=1" in timeout_lines[0]
    duration = float(timeout_lines[0].split("duration=")[1].split()[0])
    assert 2 <= duration < 2 + 5
    errors = (runner.output / "logs/user/error.txt").read_text()
    assert "timed out" in errors and "mini-batch 2 try 1: run() timed out after 2 s" in errors
    # the stack of the stuck run() is in the process's error log
    stacks = "".join(p.read_text() for p in (runner.output / "logs/user/error").rglob("*.txt"))
    assert "time.sleep(10_000)" in stacks or "in run" in stacks


def result_location(runner):
    from airflow_parallel_run.storage import LocalLocation

    return LocalLocation(str(runner.output))


def test_processes_started_by_a_timed_out_run_are_killed_too(runner):
    make_files(runner.inputs, 2)
    script = runner.script("""
    import os, subprocess, time
    def run(mini_batch):
        marker = os.path.join(MARKS, "children")
        if not os.path.exists(marker):
            same_group = subprocess.Popen(["sleep", "1000"])
            own_session = subprocess.Popen(["sleep", "1001"], start_new_session=True)
            open(marker, "w").write(f"{same_group.pid} {own_session.pid}")
            time.sleep(10_000)
        return mini_batch
    """)
    result = runner.run(script, mini_batch_size=2, run_invocation_timeout=1.5)
    assert result.success
    pids = [int(p) for p in (runner.marks / "children").read_text().split()]
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in pids)


def test_a_worker_that_kills_itself_on_the_first_try_succeeds_on_the_second(runner):
    make_files(runner.inputs, 6)
    script = runner.script("""
    import os, signal
    def run(mini_batch):
        marker = os.path.join(MARKS, "died-" + os.path.basename(mini_batch[0]))
        if not os.path.exists(marker):
            open(marker, "w").close()
            if mini_batch[0].endswith("f0000.txt"):
                os._exit(7)
            if mini_batch[0].endswith("f0002.txt"):
                os.kill(os.getpid(), signal.SIGKILL)
            if mini_batch[0].endswith("f0004.txt"):
                import ctypes
                ctypes.string_at(0)  # segmentation fault
        return [os.path.basename(p) for p in mini_batch]
    """)
    result = runner.run(script, mini_batch_size=2, process_count_per_node=2)
    assert result.success, result.reason
    assert output_lines(runner.output) == [f"f{i:04d}.txt" for i in range(6)]
    location = result_location(runner)
    assert [read_record(location, i)[0].tries for i in range(3)] == [2, 2, 2]
    errors = (runner.output / "logs/user/error.txt").read_text()
    assert "exit code 7" in errors
    assert "SIGKILL" in errors
    assert "SIGSEGV" in errors


def test_after_run_max_try_failed_tries_every_item_of_the_mini_batch_fails(runner):
    make_files(runner.inputs, 6)
    script = runner.script("""
    import os
    def run(mini_batch):
        open(os.path.join(MARKS, "try-" + os.urandom(4).hex()), "w").write(mini_batch[0])
        if mini_batch[0].endswith("f0002.txt"):
            raise ValueError("cannot score " + os.path.basename(mini_batch[0]))
        return [os.path.basename(p) for p in mini_batch]
    """)
    result = runner.run(script, mini_batch_size=2, run_max_try=4)
    assert result.success  # no threshold set: failures are counted, not fatal
    assert result.totals.failed_items == 2 and result.totals.failed_mini_batches == 1
    assert output_lines(runner.output) == ["f0000.txt", "f0001.txt", "f0004.txt", "f0005.txt"]
    tries_of_bad = [p for p in runner.marks_named("try-") if p.read_text().endswith("f0002.txt")]
    assert len(tries_of_bad) == 4
    record, _ = read_record(result_location(runner), 1)
    assert (record.status, record.tries, record.failed) == ("failed", 4, 2)
    tracebacks = "".join(p.read_text() for p in (runner.output / "logs/user/error").rglob("*.txt"))
    events = [ln for ln in tracebacks.splitlines() if ln.startswith("=== ")]
    assert len(events) == 4 and all("ValueError: cannot score f0002.txt" in e for e in events)
    summary = (runner.output / "logs/user/error.txt").read_text()
    grouped, every = summary.split("every error, oldest first:\n")
    assert grouped.splitlines()[0] == "4 errors in 1 groups, most frequent first:"
    assert grouped.splitlines()[1].startswith("4 x ValueError: cannot score f0002.txt -- first ")
    assert f"first item: {runner.inputs / 'f0002.txt'}" in grouped
    assert [ln.split(" mini-batch ")[1].split(":")[0] for ln in every.splitlines()] == [
        "1 try 1", "1 try 2", "1 try 3", "1 try 4"]
    assert "Traceback (most recent call last)" in tracebacks


def test_init_that_raises_stops_the_job_with_the_reason_and_never_hangs(runner):
    make_files(runner.inputs, 4)
    script = runner.script("""
    import os
    def init():
        open(os.path.join(MARKS, "init-" + str(os.getpid())), "w").close()
        raise RuntimeError("model file missing")
    def run(mini_batch):
        return mini_batch
    """)
    started = time.monotonic()
    result = runner.run(script, process_count_per_node=2)
    assert time.monotonic() - started < 30
    assert not result.success
    assert "init() failed 6 times" in result.reason and "model file missing" in result.reason
    assert len(runner.marks_named("init-")) == 6  # 3 x process_count_per_node
    assert not (runner.output / "parallel_run_step.txt").exists()
    tracebacks = "".join(p.read_text() for p in (runner.output / "logs/user/error").rglob("*.txt"))
    assert "RuntimeError: model file missing" in tracebacks


def test_init_past_its_timeout_counts_as_an_init_failure(runner):
    make_files(runner.inputs, 2)
    script = runner.script("""
    import time
    def init():
        time.sleep(10_000)
    def run(mini_batch):
        return mini_batch
    """)
    started = time.monotonic()
    result = runner.run(script, init_timeout=0.5)
    assert time.monotonic() - started < 20
    assert not result.success and "init() failed 3 times" in result.reason
    assert "timed out" in result.reason


def test_run_results_that_are_not_a_list_fail_the_try(runner):
    make_files(runner.inputs, 8)
    script = runner.script("""
    import os
    def run(mini_batch):
        name = os.path.basename(mini_batch[0])
        if name == "f0000.txt":
            return None
        if name == "f0002.txt":
            return 42
        if name == "f0004.txt":
            return "a string"
        return [os.path.basename(p) for p in mini_batch]
    """)
    result = runner.run(script, mini_batch_size=2, run_max_try=1)
    assert result.totals.failed_mini_batches == 3
    assert output_lines(runner.output) == ["f0006.txt", "f0007.txt"]
    errors = (runner.output / "logs/user/error.txt").read_text()
    assert "run() returned NoneType" in errors
    assert "run() returned int 42" in errors
    assert "run() returned str" in errors


def test_fewer_results_fail_the_rest_and_more_results_are_written_with_a_warning(runner):
    make_files(runner.inputs, 4)
    script = runner.script("""
    import os
    def run(mini_batch):
        names = [os.path.basename(p) for p in mini_batch]
        if names[0] == "f0000.txt":
            return names[:1]  # one of two
        return names + ["extra"]  # three for two
    """)
    result = runner.run(script, mini_batch_size=2)
    assert result.success
    assert result.totals.succeeded_items == 3 and result.totals.failed_items == 1
    assert output_lines(runner.output) == ["f0000.txt", "f0002.txt", "f0003.txt", "extra"]
    node_log = "".join(p.read_text() for p in (runner.output / "logs/sys/node").rglob("*.txt"))
    assert "WARNING run() returned 3 results for 2 items in mini-batch 1" in node_log
    errors = (runner.output / "logs/user/error.txt").read_text()
    assert "mini-batch 0 try 1: run() returned 1 results for 2 items: 1 items count as failed" in errors


def test_file_names_with_spaces_unicode_and_newlines(runner):
    runner.inputs.mkdir()
    names = ["a b.txt", "é ü 漢字.txt", "new\nline.txt", "plain.txt"]
    for name in names:
        (runner.inputs / name).write_text(name)
    script = runner.script("""
    import os
    def run(mini_batch):
        return [repr(open(p).read()) for p in mini_batch]
    """)
    result = runner.run(script, mini_batch_size=3, process_count_per_node=2)
    assert result.success and result.totals.succeeded_items == 4
    assert output_lines(runner.output) == [repr(n) for n in sorted(names)]


def test_summary_only_counts_results_and_writes_no_output_file(runner):
    make_files(runner.inputs, 5)
    result = runner.run(runner.script(ECHO), output_action="summary_only", mini_batch_size=2)
    assert result.success and result.totals.succeeded_items == 5
    assert not (runner.output / "parallel_run_step.txt").exists()
    assert result.output_file is None


def test_an_output_file_name_of_255_bytes_is_written(runner):
    make_files(runner.inputs, 2)
    name = "é" * 126 + "abc"  # 255 bytes: its temporary file's name must still fit
    result = runner.run(runner.script(ECHO), append_row_file_name=name)
    assert result.success, result.reason
    assert output_lines(runner.output, name) == expected_lines(2)


def test_a_different_job_in_the_same_output_starts_fresh(runner):
    make_files(runner.inputs, 4)
    first = runner.run(runner.script(ECHO), mini_batch_size=2)
    assert first.success and not first.resumed
    again = runner.run(runner.script(ECHO), mini_batch_size=2)
    assert again.resumed  # same job: nothing to run again
    other = runner.run(runner.script(ECHO.replace(": ", " = ")), mini_batch_size=2)
    assert not other.resumed
    assert output_lines(runner.output)[0] == "f0000.txt = item 0"


def test_memory_filesystem_input_arrives_in_run_as_local_paths(runner):
    import fsspec

    fs = fsspec.filesystem("memory")
    for i in range(5):
        fs.pipe(f"/engine-test/data/x{i}.txt", f"remote {i}".encode())
    script = runner.script("""
    import os
    def run(mini_batch):
        assert all(os.path.isfile(p) and "://" not in p for p in mini_batch), mini_batch
        return [f"{os.path.basename(p)} {open(p).read()}" for p in mini_batch]
    """)
    dataset = FileDataset.from_files("memory://engine-test/data")
    result = runner.run(script, inputs=[dataset], mini_batch_size=2)
    assert result.success, result.reason
    assert output_lines(runner.output) == [f"x{i}.txt remote {i}" for i in range(5)]


def test_records_are_durable_and_the_output_appears_only_whole(runner):
    make_files(runner.inputs, 6)
    result = runner.run(runner.script(ECHO), mini_batch_size=2)
    location = result_location(runner)
    for index in range(3):
        record, payload = read_record(location, index)
        assert record.status == "ok" and payload.decode().count("\n") == 2
    leftovers = [p for p in runner.output.rglob("*.tmp")]
    assert leftovers == []
    assert json.loads((runner.output / ".parallel_run/job.json").read_text())["mini_batch_count"] == 3
    assert result.output_file == str(runner.output / "parallel_run_step.txt")


@pytest.mark.parametrize("into", ["file", "pipe"])
def test_copy_rest_appends_the_rest_of_a_file_by_the_kernel_or_by_hand(tmp_path, into):
    # a regular file takes copy_file_range; a pipe refuses it (EINVAL): the copy goes by hand
    from airflow_parallel_run.storage import copy_rest

    source = tmp_path / "record"
    source.write_bytes(b'{"head": 1}\n' + b"line\n" * 50_000)
    with open(source, "rb") as handle:
        assert handle.readline() == b'{"head": 1}\n'
        if into == "file":
            fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
            os.write(fd, b"before\n")
            copy_rest(handle, fd)
            os.close(fd)
            assert (tmp_path / "out").read_bytes() == b"before\n" + b"line\n" * 50_000
        else:
            read, write = os.pipe()
            got: list[bytes] = []
            reader = threading.Thread(target=lambda: got.extend(iter_pipe(read)))
            reader.start()
            copy_rest(handle, write)
            os.close(write)
            reader.join()
            os.close(read)
            assert b"".join(got) == b"line\n" * 50_000


def iter_pipe(fd):
    while chunk := os.read(fd, 1 << 16):
        yield chunk


def test_a_folder_is_listed_in_sorted_path_order_in_bounded_chunks(tmp_path, monkeypatch):
    # files and sub-folders interleave by name; no chunk holds more than LIST_CHUNK paths
    from airflow_parallel_run.inputs import files

    monkeypatch.setattr(files, "LIST_CHUNK", 3)
    names = ["a1", "a2", "a3", "a4", "b/x1", "b/x2", "c1", "d/e/y1", "d/z1", "d0", "d-x", "d.csv",
             "f1", "f2"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    for stats in (True, False):
        chunks = list(FileDataset.from_files(str(tmp_path)).iter_chunks(stats=stats))
        paths = [item if isinstance(item, str) else item.path for c in chunks for item in c]
        assert paths == [str(tmp_path / n) for n in sorted(names)]
        assert max(len(c) for c in chunks) == 3
