"""Nodes share the work: claims, leases, take-overs; slow, late and lost nodes; local and S3."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import CLI, free_port, make_files, wait_for_port

from airflow_parallel_run import FileDataset, ParallelRunConfig, run_job
from airflow_parallel_run.engine.claims import (
    CLOCK_OFFSET_ENV,
    WAITING,
    Claim,
    ClaimBoard,
    claim_rel,
)
from airflow_parallel_run.engine.job import Job
from airflow_parallel_run.engine.work_queue import WorkQueue
from airflow_parallel_run.events import read_events
from airflow_parallel_run.leases import create_exclusive
from airflow_parallel_run.plan import PLAN_DIR, MiniBatch, iter_plan
from airflow_parallel_run.storage import open_location

RUN_NODE = str(Path(__file__).with_name("run_node.py"))

# run() sleeps SLOW seconds for files of node 0's fixed share (named s...), FAST for the rest
SCRIPT = """
import os, time
SLOW, FAST = {slow}, {fast}
def init():
    pass
def run(mini_batch):
    for p in mini_batch:
        open(os.path.join({marks!r}, f"{{os.getppid()}}-{{os.path.basename(p)}}"), "w").close()
        time.sleep(SLOW if os.path.basename(p).startswith("s") else FAST)
    return [os.path.basename(p) for p in mini_batch]
"""


# moto's server answers requests on threads, and checks If-None-Match and stores the object in
# two steps: two racing PutObject calls can both succeed there, never on S3. With one request
# handled at a time it is atomic, as S3 is: the races are run against that.
SERIAL_MOTO = """
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()
def one_at_a_time(environ, start_response):
    with lock:
        return list(app(environ, start_response))
run_simple("127.0.0.1", int(sys.argv[1]), one_at_a_time, threaded=True)
"""


@pytest.fixture
def serial_s3(tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERIAL_MOTO, str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_for_port(port, server, "moto")
        options = {"key": "testing", "secret": "testing",
                   "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="races")
        yield "s3://races/claims", options
    finally:
        server.terminate()
        server.wait()


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path):
    """Where the output goes: (output url, storage options)."""
    if request.param == "local":
        return str(tmp_path / "out"), {}
    fs, options, prefix, _ = request.getfixturevalue("s3")
    return f"s3://{prefix}/out", options


def _job(tmp_path: Path, output: str, options: dict, files: int, slow_files: int = 0,
         slow: float = 0.0, fast: float = 0.0, **config: object) -> Job:
    """A job over ``files`` one-file mini-batches; the first ``slow_files`` are slow."""
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    inputs = tmp_path / "in"
    make_files(inputs, slow_files, prefix="s")
    make_files(inputs, files - slow_files, prefix="t")
    script = tmp_path / "score.py"
    script.write_text(SCRIPT.format(slow=slow, fast=fast, marks=str(marks)))
    cfg = ParallelRunConfig(entry_script=str(script), mini_batch_size=1, **config)
    return Job(cfg, [FileDataset.from_files(str(inputs))], output, output_storage_options=options)


def _node_process(job: Job, job_plan, node: int, tmp_path: Path,
                  env: dict[str, str] | None = None) -> subprocess.Popen:
    spec = {"config": job.config.to_dict(), "input": str(tmp_path / "in"),
            "output": str(job.location.url), "options": job.output_storage_options,
            "plan": job_plan.to_dict(), "node": node}
    return subprocess.Popen([sys.executable, RUN_NODE, json.dumps(spec)], start_new_session=True,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen):
    from airflow_parallel_run.engine.node import NodeResult

    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    return NodeResult.from_dict(json.loads(out.strip().splitlines()[-1]))


def _lines(job: Job) -> list[str]:
    data = job.location.read_bytes(job.config.append_row_file_name)
    assert data is not None
    return data.decode().splitlines()


def _master_role(job: Job) -> str:
    return (job.location.read_bytes("logs/sys/master_role.txt") or b"").decode()


# -- two nodes racing for one unit ---------------------------------------------------------------

SCHEMES = {"azure": "abfs", "gcs": "gs"}  # the URL scheme of a store's fixture


def _race_place(store: str, tmp_path: Path, request) -> tuple[str, dict]:
    if store == "local":
        return str(tmp_path / "out"), {}
    if store in ("azure", "gcs"):
        _, options, prefix = request.getfixturevalue(store)
        return f"{SCHEMES[store]}://{prefix}/claims", options
    return request.getfixturevalue("serial_s3")


@pytest.mark.parametrize("store", ["local", "s3", "azure", "gcs"])
def test_two_nodes_racing_for_a_unit_1000_times_one_wins_each_time(store, tmp_path, request):
    output, options = _race_place(store, tmp_path, request)
    location = open_location(output, options)
    races = 1000  # on Azurite about 18 s
    go = threading.Barrier(2)
    won: list[list[int]] = [[], []]

    def node(i: int) -> None:  # each race: both create the same claim at once
        for race in range(races):
            go.wait()
            claim = Claim(race, race + 1, node=i).to_json()
            if create_exclusive(location, claim_rel(race), claim):
                won[i].append(race)

    threads = [threading.Thread(target=node, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won[0] + won[1]) == list(range(races))  # one winner each, never two
    assert all(Claim.from_json(location.read_bytes(claim_rel(r)) or b"").node == i  # type: ignore[union-attr]
               for i in (0, 1) for r in won[i][:20])


# -- skew, late, lost ------------------------------------------------------------------------------

def test_nodes_end_together_when_one_share_holds_every_slow_mini_batch(tmp_path, place):
    output, options = place
    slow = 0.5
    job = _job(tmp_path, output, options, files=30, slow_files=10, slow=slow, node_count=3)
    job_plan = job.plan()
    nodes = [_node_process(job, job_plan, i, tmp_path) for i in range(3)]
    results = [_result(p) for p in nodes]
    assert job.reduce(job_plan, results).success
    tries = read_events(job.location).sorted_tries()
    last_end = {n: max(t.end for t in tries if t.node == n) for n in range(3)}
    # a mini-batch's time: its run, and on S3 the requests around it (claim, plan, record);
    # the slowest node may still run one it took ahead for its busy worker
    one = slow + (1.0 if options else 0.1)
    assert max(last_end.values()) - min(last_end.values()) <= 2 * one, last_end
    # the slow share (mini-batches 0-9) was shared: nodes 1 and 2 ran some of it
    assert {t.node for t in tries if t.mini_batch < 10} == {0, 1, 2}
    assert _lines(job) == sorted(_lines(job)) and len(_lines(job)) == 30


def test_a_late_node_finds_everything_done_runs_nothing_and_succeeds(tmp_path, place):
    output, options = place
    job = _job(tmp_path, output, options, files=8, node_count=2)
    job_plan = job.plan()
    first = job.run_node(job_plan, 0)  # alone: it claims node 1's share too
    started = time.monotonic()
    late = job.run_node(job_plan, 1)
    assert time.monotonic() - started < 5
    assert late.totals.mini_batches_done == 0 and late.stop_reason is None
    assert "node 2: nothing left" in _master_role(job)  # node index 1, read from 1
    result = job.reduce(job_plan, [first, late])
    assert result.success and len(_lines(job)) == 8


def test_a_lost_node_has_its_units_taken_over_and_the_output_is_exactly_once(tmp_path, place):
    output, options = place
    job = _job(tmp_path, output, options, files=24, slow_files=0, fast=0.2, node_count=3,
               lease_timeout=1.5)
    job_plan = job.plan()
    nodes = [_node_process(job, job_plan, i, tmp_path) for i in range(3)]
    marks = tmp_path / "marks"
    deadline = time.monotonic() + 60
    while not any(m.name.split("-")[0] == str(nodes[1].pid) for m in marks.iterdir()):
        assert time.monotonic() < deadline, "node 1 never ran a mini-batch"
        time.sleep(0.02)
    os.killpg(nodes[1].pid, signal.SIGKILL)  # the node and its workers, mid mini-batch
    nodes[1].wait()
    results = [_result(nodes[0]), None, _result(nodes[2])]
    result = job.reduce(job_plan, results)
    assert result.success, result.reason
    lines = _lines(job)
    assert lines == sorted(set(lines)) and len(lines) == 24
    taken = re.search(r"work sharing: (\d+) unit\(s\) taken over", _master_role(job))
    assert taken and int(taken.group(1)) >= 1
    assert taken.group(0) in (job.location.read_bytes("logs/job_report.html") or b"").decode()


def test_nodes_share_the_work_through_claims_on_azure_and_the_output_is_exactly_once(tmp_path, azure):
    _shared_through_claims_exactly_once(tmp_path, "azure", azure)


def test_nodes_share_the_work_through_claims_on_gcs_and_the_output_is_exactly_once(tmp_path, gcs):
    _shared_through_claims_exactly_once(tmp_path, "gcs", gcs)


def test_parallel_run_s_nodes_on_threads_claim_through_one_gcs_filesystem_exactly_once(tmp_path, gcs):
    _, options, prefix = gcs  # run_job runs every node on a thread; they share one gcsfs object
    make_files(tmp_path / "in", 24)
    (tmp_path / "score.py").write_text("def run(mb):\n    return mb\n")
    config = ParallelRunConfig(entry_script=str(tmp_path / "score.py"), mini_batch_size=1,
                               node_count=3)
    result = run_job(config, [FileDataset.from_files(str(tmp_path / "in"))], f"gs://{prefix}/out",
                     output_storage_options=options)
    assert result.success, result.reason
    location = open_location(f"gs://{prefix}/out", options)
    assert "work sharing: " in (location.read_bytes("logs/sys/master_role.txt") or b"").decode()
    assert location.listdir(".parallel_run/claims")
    lines = (location.read_bytes("parallel_run_step.txt") or b"").decode().splitlines()
    assert lines == sorted(set(lines)) and len(lines) == 24


def _shared_through_claims_exactly_once(tmp_path: Path, store: str, fixture) -> None:
    _, options, prefix = fixture
    job = _job(tmp_path, f"{SCHEMES[store]}://{prefix}/out", options, files=12, node_count=2)
    job_plan = job.plan()
    assert "no atomic create" not in _master_role(job) and "work sharing: " in _master_role(job)
    first = job.run_node(job_plan, 0)  # alone: it claims node 1's share too
    late = job.run_node(job_plan, 1)
    assert [first.totals.mini_batches_done, late.totals.mini_batches_done] == [12, 0]
    assert job.reduce(job_plan, [first, late]).success
    lines = _lines(job)
    assert lines == sorted(set(lines)) and len(lines) == 12


# -- leases: clock skew, torn claims, a retried node ---------------------------------------------

def test_a_node_whose_clock_is_30_s_ahead_takes_no_live_unit_over(tmp_path):
    job = _job(tmp_path, str(tmp_path / "out"), {}, files=6, fast=1.0, node_count=2,
               lease_timeout=0.8)
    job_plan = job.plan()
    nodes = [_node_process(job, job_plan, 0, tmp_path),
             _node_process(job, job_plan, 1, tmp_path, env={CLOCK_OFFSET_ENV: "30"})]
    results = [_result(p) for p in nodes]
    assert job.reduce(job_plan, results).success
    assert "work sharing: 0 unit(s) taken over from another node, 0 mini-batch(es) ran twice" \
        in _master_role(job)


def test_a_torn_claim_is_held_until_its_lease_runs_out(tmp_path):
    job = _job(tmp_path, str(tmp_path / "out"), {}, files=4, node_count=2, lease_timeout=1.5)
    job_plan = job.plan()
    job.location.write_atomic(claim_rel(0), b'{"start": 0, "en')  # a crash while writing it
    started = time.monotonic()
    alone = job.run_node(job_plan, 1)
    assert time.monotonic() - started >= 1.5
    assert alone.totals.mini_batches_done == 4
    assert "took over mini-batches 0-" in _master_role(job)


def test_a_retried_node_resumes_its_own_unit_at_once(tmp_path):
    job = _job(tmp_path, str(tmp_path / "out"), {}, files=4, node_count=2, lease_timeout=60)
    job_plan = job.plan()
    earlier = Claim(2, 4, node=1, beat=7)  # held by node 1's first try, which died
    job.location.write_atomic(claim_rel(2), earlier.to_json())
    started = time.monotonic()
    retried = job.run_node(job_plan, 1)
    assert time.monotonic() - started < 30  # not after the lease
    assert retried.totals.mini_batches_done == 4
    assert "node 2 resumes its unit 2-3" in _master_role(job)


def test_a_node_waits_for_a_unit_another_node_holds(tmp_path):
    location = open_location(str(tmp_path / "out"))
    other = ClaimBoard(location, 2, 2, 1, lease_timeout=60)
    assert isinstance(other.next_unit(), Claim)  # node 1 holds its share, and lives
    board = ClaimBoard(location, 2, 2, 0, lease_timeout=60)
    assert isinstance(board.next_unit(), Claim)  # its own share
    assert board.next_unit() is WAITING


def test_a_node_waiting_on_a_local_folder_looks_again_within_hundredths_of_a_second(tmp_path):
    # it ends that soon after the last unit is done: looking at a few local claims costs little
    location = open_location(str(tmp_path / "out"))
    assert isinstance(ClaimBoard(location, 2, 2, 1, lease_timeout=60).next_unit(), Claim)
    board = ClaimBoard(location, 2, 2, 0, lease_timeout=60)
    assert isinstance(board.next_unit(), Claim)
    assert board.next_unit() is WAITING
    assert board.due_in() <= 0.05


def test_a_busy_node_is_not_woken_to_look_at_the_units_of_others(tmp_path):
    location = open_location(str(tmp_path / "out"))
    assert isinstance(ClaimBoard(location, 4, 2, 1, lease_timeout=60).next_unit(), Claim)
    board = ClaimBoard(location, 4, 2, 0, lease_timeout=60)
    units = [board.next_unit() for _ in range(3)]  # its share (0, 1), then 3: 2 is node 1's
    assert [u.start for u in units] == [0, 1, 3]  # type: ignore[union-attr]
    assert board.due_in() > 10  # its next renewal (lease_timeout / 4), not a look at unit 2


def test_a_busy_workers_next_mini_batch_leaves_the_last_unit_per_node_to_free_workers(tmp_path):
    board = ClaimBoard(open_location(str(tmp_path / "out")), 8, 2, 0, lease_timeout=60)
    queue = WorkQueue(1, lambda: False)  # node 0 of 2: its share is 0-3, units of one
    queue.read_claims(board, lambda claim: iter([MiniBatch(i, "in", []) for i in claim.indices]))
    assert queue.next().batch.index == 0  # type: ignore[union-attr]
    assert queue.next(ahead=True).batch.index == 1  # type: ignore[union-attr]
    assert queue.next(ahead=True) is None  # 2 and 3 left: one per node, for a free worker
    assert queue.next().batch.index == 2  # type: ignore[union-attr]


def test_reading_a_unit_of_the_plan_parses_only_its_own_lines(tmp_path):
    # a node sharing work reads its chunk once per unit: the other lines are not even parsed
    location = open_location(str(tmp_path / "out"))
    lines = [MiniBatch(i, "in", [f"{i}.txt"]).to_json() if i in (5, 6) else "not json"
             for i in range(10)]
    location.write_atomic(f"{PLAN_DIR}/00000.jsonl", ("\n".join(lines) + "\n").encode())
    assert [b.items for b in iter_plan(location, range(5, 7))] == [["5.txt"], ["6.txt"]]


# -- modes and options -----------------------------------------------------------------------------

def test_fixed_shares_when_work_sharing_is_off(tmp_path):
    job = _job(tmp_path, str(tmp_path / "out"), {}, files=4, node_count=2, work_sharing=False)
    job_plan = job.plan()
    assert "fixed shares" in _master_role(job) and "work_sharing is off" in _master_role(job)
    results = [job.run_node(job_plan, i) for i in range(2)]
    assert [r.totals.mini_batches_done for r in results] == [2, 2]
    assert not job.location.listdir(".parallel_run/claims")


def test_fixed_shares_on_a_store_without_atomic_create(tmp_path):
    job = _job(tmp_path, "memory://sharing-fallback/out", {}, files=4, node_count=2)
    job_plan = job.plan()
    assert "no atomic create" in _master_role(job)
    results = [job.run_node(job_plan, i) for i in range(2)]
    assert [r.totals.mini_batches_done for r in results] == [2, 2]


def test_cli_node_count_shares_the_work(tmp_path):
    make_files(tmp_path / "in", 6)
    (tmp_path / "score.py").write_text("def run(mb):\n    return mb\n")
    done = subprocess.run([*CLI, str(tmp_path / "score.py"), "--input", str(tmp_path / "in"),
                           "--output", str(tmp_path / "out"), "--node-count", "3",
                           "--mini-batch-size", "1", "--lease-timeout", "5", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "a unit not renewed for 5 s" in (tmp_path / "out/logs/sys/master_role.txt").read_text()
    assert os.listdir(tmp_path / "out/.parallel_run/claims")


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--lease-timeout", "0", ["lease_timeout", "0"]),
    ("--lease-timeout", "soon", ["lease_timeout", "soon"]),
    ("--work-sharing", "maybe", ["--work-sharing", "maybe"]),
])
def test_cli_refuses_a_bad_sharing_option_in_one_line(tmp_path, option, value, words):
    (tmp_path / "score.py").write_text("def run(mb):\n    return mb\n")
    done = subprocess.run([*CLI, str(tmp_path / "score.py"), "--input", str(tmp_path),
                           "--output", str(tmp_path / "out"), option, value],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and all(w in done.stderr for w in words)
