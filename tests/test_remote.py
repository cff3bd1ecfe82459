"""The engine against remote storage: an S3 server on loopback (moto), and memory://."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import fsspec
import pytest
from support import CLI, TcpProxy, make_files, start_moto

from airflow_parallel_run import FileDataset, SideInput
from airflow_parallel_run.errors import InputError

BUCKET = "prs-test"


SCRIPT = """
import argparse, os, time
from azureml_user.parallel_run import EntryScript

def init():
    global LABEL
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels")
    args, _ = parser.parse_known_args()
    LABEL = open(args.labels).read().strip()

def run(mini_batch):
    time.sleep(float(os.environ.get("SLOW", "0")))
    EntryScript().logger.info("scoring %d files", len(mini_batch))
    for p in mini_batch:
        assert os.path.isfile(p) and "://" not in p
        with open(os.path.join(MARKS, "calls"), "a") as f:
            f.write(os.path.basename(p) + "\\n")
    return [f"{os.path.basename(p)} {open(p).read().strip()} {LABEL}" for p in mini_batch]
"""


def _upload_inputs(fs, prefix: str, count: int) -> None:
    for i in range(count):
        fs.pipe(f"{prefix}/in/f{i:04d}.txt", f"item {i}".encode())
    fs.pipe(f"{prefix}/side/labels.txt", b"label-x")


def test_inputs_side_input_and_output_on_s3(runner, s3):
    fs, options, prefix, _ = s3
    _upload_inputs(fs, prefix, 7)
    script = runner.script(SCRIPT)
    labels = SideInput(f"s3://{prefix}/side/labels.txt", name="labels", storage_options=options)
    dataset = FileDataset.from_files(f"s3://{prefix}/in", storage_options=options)
    from airflow_parallel_run import ParallelRunConfig, run_job

    result = run_job(ParallelRunConfig(entry_script=str(script), mini_batch_size=3,
                                       process_count_per_node=2),
                     [dataset], f"s3://{prefix}/out", arguments=["--labels", labels],
                     output_storage_options=options)
    assert result.success, result.reason
    assert result.output_file == f"s3://{prefix}/out/parallel_run_step.txt"
    fs.invalidate_cache()
    lines = fs.cat(f"{prefix}/out/parallel_run_step.txt").decode().splitlines()
    assert lines == [f"f{i:04d}.txt item {i} label-x" for i in range(7)]
    assert fs.cat(f"{prefix}/out/logs/job_result.txt").decode().startswith("SUCCESS")
    entry_logs = fs.find(f"{prefix}/out/logs/user/entry_script_log")
    assert len(entry_logs) == 2
    assert b"scoring 3 files" in b"".join(fs.cat(p) for p in entry_logs)
    assert fs.find(f"{prefix}/out/logs/sys/node")
    assert len(fs.find(f"{prefix}/out/.parallel_run/results")) == 3


def test_killed_on_s3_then_run_again_finishes_exactly_once(runner, s3):
    fs, _, prefix, env = s3
    _upload_inputs(fs, prefix, 40)
    script = runner.script(SCRIPT)
    cmd = CLI + [str(script), "--input", f"s3://{prefix}/in", "--output", f"s3://{prefix}/out",
                 "--mini-batch-size", "2", "--process-count-per-node", "2",
                 "--side-input", f"labels=s3://{prefix}/side/labels.txt", "--quiet",
                 "--", "--labels", "placeholder"]
    # the side input reaches the script through EntryScript; here --labels names a local copy
    labels_local = runner.tmp / "labels.txt"
    labels_local.write_text("label-x")
    cmd[-1] = str(labels_local)
    job_env = {**os.environ, **env, "SLOW": "0.2"}
    first = subprocess.Popen(cmd, env=job_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = f"{prefix}/out/.parallel_run/results"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fs.invalidate_cache()
        if fs.exists(results) and len(fs.find(results)) >= 5:
            break
        assert first.poll() is None, first.communicate()
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(1.0)
    fs.invalidate_cache()
    done_before = {int(p.rsplit("/", 1)[-1][:-4]) for p in fs.find(results)}
    assert 5 <= len(done_before) < 20
    calls_before = Counter((runner.marks / "calls").read_text().split())

    second = subprocess.run(cmd, env=job_env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    fs.invalidate_cache()
    lines = fs.cat(f"{prefix}/out/parallel_run_step.txt").decode().splitlines()
    assert lines == [f"f{i:04d}.txt item {i} label-x" for i in range(40)]
    calls_after = Counter((runner.marks / "calls").read_text().split()) - calls_before
    rerun = {int(name[1:5]) // 2 for name in calls_after}
    assert not rerun & done_before


def test_missing_bucket_and_bad_credentials_are_clear_errors_naming_the_url(runner, s3):
    fs, options, prefix, env = s3
    script = runner.script("def run(mb):\n    return mb\n")
    (runner.inputs).mkdir()
    (runner.inputs / "a.txt").write_text("a")
    from airflow_parallel_run import ParallelRunConfig, run_job

    config = ParallelRunConfig(entry_script=str(script))
    with pytest.raises(InputError) as missing:
        run_job(config, [FileDataset.from_files(str(runner.inputs))], "s3://no-such-bucket-xyz/out",
                output_storage_options=options)
    assert "s3://no-such-bucket-xyz/out" in str(missing.value)
    assert "bucket" in str(missing.value)

    # a server that checks credentials refuses ours
    locked, port = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        bad = dict(options, key="wrong", secret="wrong",
                   client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"})
        with pytest.raises(InputError) as refused:
            run_job(config, [FileDataset.from_files(f"s3://{BUCKET}/in", storage_options=bad)],
                    str(runner.output))
        message = str(refused.value)
        assert f"s3://{BUCKET}/in" in message and "refused" in message
        assert "credentials" in message
        with pytest.raises(InputError) as refused_output:
            run_job(config, [FileDataset.from_files(str(runner.inputs))], f"s3://{BUCKET}/out",
                    output_storage_options=bad)
        assert f"s3://{BUCKET}/out" in str(refused_output.value)
    finally:
        locked.terminate()
        locked.wait()

    # the same through the command line: exit 2, one line, no traceback
    done = subprocess.run(CLI + [str(script), "--input", str(runner.inputs), "--output",
                                 "s3://no-such-bucket-xyz/out"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "s3://no-such-bucket-xyz/out" in done.stderr and "Traceback" not in done.stderr


def test_memory_output_location(runner):
    for i in range(3):
        (runner.inputs).mkdir(exist_ok=True)
        (runner.inputs / f"m{i}.txt").write_text(str(i))
    script = runner.script("import os\ndef run(mb):\n    return [os.path.basename(p) for p in mb]\n")
    from airflow_parallel_run import ParallelRunConfig, run_job

    result = run_job(ParallelRunConfig(entry_script=str(script), mini_batch_size=2),
                     [FileDataset.from_files(str(runner.inputs))], "memory://remote-out/job1")
    assert result.success, result.reason
    fs = fsspec.filesystem("memory")
    assert fs.cat("/remote-out/job1/parallel_run_step.txt") == b"m0.txt\nm1.txt\nm2.txt\n"
    assert fs.cat("/remote-out/job1/logs/job_result.txt").startswith(b"SUCCESS")


def test_a_csv_on_s3_is_read_by_byte_range_in_the_workers(runner, s3):
    fs, options, prefix, _ = s3
    rows = "".join(f"{i},{i % 7}\n" for i in range(3000))
    fs.pipe(f"{prefix}/table/data.csv", ("id,value\n" + rows).encode())
    script = runner.script("def run(df):\n    return df[['id']]\n")
    from airflow_parallel_run import ParallelRunConfig, TabularDataset, run_job

    dataset = TabularDataset.from_delimited_files(f"s3://{prefix}/table/data.csv",
                                                  storage_options=options)
    result = run_job(ParallelRunConfig(entry_script=str(script), mini_batch_size="4KB",
                                       process_count_per_node=2),
                     [dataset], f"s3://{prefix}/out", output_storage_options=options)
    assert result.success, result.reason
    assert result.mini_batch_count > 3
    fs.invalidate_cache()
    lines = fs.cat(f"{prefix}/out/parallel_run_step.txt").decode().splitlines()
    assert lines == [str(i) for i in range(3000)]


# -- an output store that stops answering for a while ----------------------------------------

BLINK_SCRIPT = """
import os, time

def run(mini_batch):
    time.sleep(0.3)
    with open(os.path.join(MARKS, "calls"), "a") as f:
        f.write("".join(os.path.basename(p) + "\\n" for p in mini_batch))
    return [os.path.basename(p) for p in mini_batch]
"""


@pytest.fixture
def blinking_s3(s3, s3_server):
    """The S3 server behind a proxy the test closes and opens again; the job's S3 client does
    not retry by itself (AWS_MAX_ATTEMPTS=1): only the job's own retries are at work."""
    fs, _, prefix, env = s3
    port = int(s3_server[0].rsplit(":", 1)[1])
    proxy = TcpProxy(port)
    yield fs, prefix, {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
                       "AWS_MAX_ATTEMPTS": "1"}, proxy
    proxy.close()


def _blink_job(runner, prefix: str) -> list[str]:
    make_files(runner.inputs, 16)
    script = runner.script(BLINK_SCRIPT)
    return CLI + [str(script), "--input", str(runner.inputs), "--output", f"s3://{prefix}/out",
                  "--mini-batch-size", "2", "--process-count-per-node", "2", "--quiet"]


def _records_on_server(fs, prefix: str) -> set[int]:
    fs.invalidate_cache()
    results = f"{prefix}/out/.parallel_run/results"
    return {int(p.rsplit("/", 1)[-1][:-4]) for p in fs.find(results)} if fs.exists(results) else set()


def _when_records(fs, prefix: str, job: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(_records_on_server(fs, prefix)) < count:
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.1)


def test_an_s3_output_that_stops_answering_for_3_s_mid_job_is_waited_for(runner, blinking_s3):
    fs, prefix, env, proxy = blinking_s3
    job = subprocess.Popen(_blink_job(runner, prefix), env={**os.environ, **env},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _when_records(fs, prefix, job, 2)
    proxy.close()
    time.sleep(3)
    proxy.open()
    out, err = job.communicate(timeout=120)
    assert job.returncode == 0, out + err
    assert "Traceback" not in err
    fs.invalidate_cache()
    lines = fs.cat(f"{prefix}/out/parallel_run_step.txt").decode().splitlines()
    assert lines == [f"f{i:04d}.txt" for i in range(16)]
    master = fs.cat(f"{prefix}/out/logs/sys/master_role.txt").decode()
    assert "did not answer" in master and f"s3://{prefix}/out" in master


def test_an_s3_output_down_for_good_fails_with_exit_1_and_the_next_run_resumes(runner, blinking_s3):
    fs, prefix, env, proxy = blinking_s3
    command = _blink_job(runner, prefix)
    job_env = {**os.environ, **env, "PARALLEL_RUN_STORE_RETRY_SECONDS": "2"}
    job = subprocess.Popen(command, env=job_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    _when_records(fs, prefix, job, 2)
    proxy.close()
    out, err = job.communicate(timeout=120)
    assert job.returncode == 1, out + err
    assert "Traceback" not in err, err
    assert err.splitlines()[-1].startswith(f"parallel-run: error: the output store 's3://{prefix}/out")
    assert "stopped answering" in err and "run the same command again to resume" in err
    done_before = _records_on_server(fs, prefix)
    calls_before = Counter((runner.marks / "calls").read_text().split())

    proxy.open()
    again = subprocess.run(command, env=job_env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    fs.invalidate_cache()
    lines = fs.cat(f"{prefix}/out/parallel_run_step.txt").decode().splitlines()
    assert lines == [f"f{i:04d}.txt" for i in range(16)]
    calls_after = Counter((runner.marks / "calls").read_text().split()) - calls_before
    assert not {int(name[1:5]) // 2 for name in calls_after} & done_before


def test_an_s3_output_that_does_not_answer_at_the_start_fails_with_exit_1(runner, blinking_s3):
    fs, prefix, env, proxy = blinking_s3
    proxy.close()
    done = subprocess.run(_blink_job(runner, prefix), capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env, "PARALLEL_RUN_STORE_RETRY_SECONDS": "1"})
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"parallel-run: error: the output store 's3://{prefix}/out' stopped "
                           "answering")
    assert "EndpointConnectionError" in line
    assert line.endswith("; run the same command again to resume")
    assert not (runner.marks / "calls").exists()


def test_s3_inputs_that_stop_answering_for_3_s_mid_job_are_waited_for(runner, blinking_s3):
    fs, prefix, env, proxy = blinking_s3
    for i in range(16):
        fs.pipe(f"{prefix}/in/f{i:04d}.txt", b"x")
    command = CLI + [str(runner.script(BLINK_SCRIPT)), "--input", f"s3://{prefix}/in",
                     "--output", str(runner.output), "--mini-batch-size", "2",
                     "--process-count-per-node", "2", "--quiet"]
    job = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    calls = runner.marks / "calls"
    deadline = time.monotonic() + 60
    while not calls.exists() or len(calls.read_text().split()) < 4:
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.05)
    proxy.close()
    time.sleep(3)
    proxy.open()
    out, err = job.communicate(timeout=120)
    assert job.returncode == 0, out + err
    assert (runner.output / "parallel_run_step.txt").read_text().splitlines() == \
        [f"f{i:04d}.txt" for i in range(16)]
    assert "did not answer" in (runner.output / "logs/sys/master_role.txt").read_text()


# -- a mini-batch's remote input files -------------------------------------------------------


def test_a_mini_batch_of_s3_files_is_fetched_with_one_get_per_file_and_nothing_else(s3, tmp_path):
    """Asking first whether each path is a folder doubled the requests and made the node
    wait for every file before the next (a round trip each, the store's latency each)."""
    from airflow_parallel_run.engine.staging import Staging
    from airflow_parallel_run.engine.work_queue import Task
    from airflow_parallel_run.plan import MiniBatch
    from airflow_parallel_run.storage import LocalLocation

    _, options, prefix, _ = s3
    urls = [f"s3://{prefix}/in/{name}" for name in ("a.txt", "b.txt", "same/a.txt", "c.txt")]
    fs = fsspec.core.url_to_fs(urls[0], **options)[0]  # the instance the node uses (cached)
    for number, url in enumerate(urls):
        fs.pipe(url, f"content {number}".encode())
    calls: list[str] = []
    fs.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    work = LocalLocation(str(tmp_path / "work"))
    staging = Staging(str(tmp_path / "cache"), {"in": FileDataset.from_files(
        f"s3://{prefix}/in", storage_options=options)}, work, work, lambda note: None)

    local = staging.local_items(Task(MiniBatch(0, "in", urls)))

    assert calls == ["GetObject"] * 4
    assert [open(path).read() for path in local] == [f"content {n}" for n in range(4)]
    assert len(set(local)) == 4  # two files named a.txt keep apart


def _gcs_error(code: int) -> Exception:
    from gcsfs.retry import HttpError

    return HttpError({"code": code, "message": "from the store"})


def _azure_error(status: int) -> Exception:
    from azure.core.exceptions import HttpResponseError

    error = HttpResponseError(message="from the store")
    error.status_code = status
    return error


def _azure_no_connection() -> Exception:
    from azure.core.exceptions import ServiceRequestError

    return ServiceRequestError("Connection refused")


@pytest.mark.parametrize("make, unreachable", [
    (lambda: _gcs_error(503), True), (lambda: _gcs_error(500), True),
    (lambda: _gcs_error(403), False), (lambda: _gcs_error(412), False),
    (lambda: _azure_error(503), True), (lambda: _azure_error(404), False),
    (_azure_no_connection, True),
], ids=["gcs-503", "gcs-500", "gcs-403", "gcs-412", "azure-503", "azure-404", "azure-refused"])
def test_a_gcs_or_azure_store_that_does_not_answer_is_waited_for_and_an_answer_is_not(
        make, unreachable):
    """A 5xx or a refused connection is asked again (the store's retry budget); a "no"
    (denied, precondition failed, not found) is an answer and goes through at once."""
    from airflow_parallel_run.storage import is_unreachable

    error = make()
    assert is_unreachable(error) is unreachable
    try:  # as a library raises it: wrapped in another error
        raise OSError("the request failed") from error
    except OSError as wrapped:
        assert is_unreachable(wrapped) is unreachable
