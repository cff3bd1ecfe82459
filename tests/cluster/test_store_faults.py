"""Faults of the S3 store in the middle of a cluster run: it stops answering for a while (the
proxy in front of it is closed: connections refused and cut, the store keeps its contents),
or for good; and a connection whose credential the store refuses."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from cluster import WORKERS, Cluster
from support import TcpProxy, start_moto

DAG_ID = "prt_cluster_blink"
DOWN_DAG_ID = "prt_cluster_down"  # retries=0: a node task that gives up fails the run
LOCKED_DAG_ID = "prt_cluster_locked"  # its input is read through LOCKED_CONN_ID
LOCKED_CONN_ID = "prt_cluster_locked"  # as tests/cluster/dags/prt_cluster.py names it
LOCKED_PORT = 9001


def _wait_for_records(cluster: Cluster, output: str, count: int) -> set[int]:
    deadline = time.monotonic() + 180
    while len(cluster.records(output)) < count:
        assert time.monotonic() < deadline, f"the run did not get going\n{cluster.log_tails()}"
        time.sleep(0.5)
    return cluster.records(output)


def _errors(logs: list[Path]) -> list[str]:
    """The ERROR lines of Airflow task logs (JSON lines), each with the exceptions it holds."""
    found = []
    for path in logs:
        for text in path.read_text().splitlines():
            entry = json.loads(text) if text.startswith("{") else {}
            if entry.get("level") in ("error", "critical"):
                found.append(" ".join([str(entry.get("event")), *(
                    f"{d['exc_type']}: {d['exc_value']}" for d in entry.get("error_detail", []))]))
    return found


def _innermost_frames(logs: list[Path]) -> list[str]:
    """Where each exception of the ERROR lines was raised (file names)."""
    found = []
    for path in logs:
        for text in path.read_text().splitlines():
            entry = json.loads(text) if text.startswith("{") else {}
            found += [d["frames"][-1]["filename"] for d in entry.get("error_detail", [])
                      if d.get("frames")]
    return found


def _calls(cluster: Cluster) -> Counter:
    """run() calls on every worker host so far, by input file name (marked.py's marks)."""
    marks = [cluster.home(host) / "calls.log" for host in WORKERS]
    return Counter(name for path in marks if path.exists() for name in path.read_text().split())


def test_a_store_stopped_for_ten_seconds_mid_run_is_waited_for(cluster: Cluster):
    expected = cluster.put_files("blink", ["sleep 0.3"] * 80)
    run_id = cluster.rest.trigger(DAG_ID, {"node_count": 2, "mini_batch_size": 2})
    output = cluster.output(DAG_ID, "step", run_id)
    done_before = len(_wait_for_records(cluster, output, 4))

    cluster.proxy.close()
    time.sleep(10)
    cluster.proxy.open()

    assert done_before < 40  # stopped in the middle, not after the end
    assert cluster.rest.wait(DAG_ID, run_id, timeout=180) == "success", cluster.log_tails()
    nodes = cluster.rest.task_instances(DAG_ID, run_id, "step.node")
    assert [t["try_number"] for t in nodes] == [1, 1]  # waited for, not failed and retried
    lines = cluster.s3.cat(f"{output}/parallel_run_step.txt").decode().splitlines()
    assert lines == expected


def test_a_store_stopped_for_good_fails_the_run_and_clearing_its_failed_tasks_resumes_it(
        cluster: Cluster):
    expected = cluster.put_files("down", ["sleep 0.5"] * 40)
    run_id = cluster.rest.trigger(DOWN_DAG_ID, {"node_count": 2, "mini_batch_size": 2})
    output = cluster.output(DOWN_DAG_ID, "step", run_id)
    _wait_for_records(cluster, output, 4)
    cluster.proxy.close()
    try:
        state = cluster.rest.wait(DOWN_DAG_ID, run_id, timeout=180)
    finally:
        cluster.proxy.open()
    assert state == "failed", cluster.log_tails()
    for task in ("step.node", "step.reducer"):  # one line each, saying how to resume
        logs = cluster.task_logs(DOWN_DAG_ID, run_id, task)
        reasons = _errors(logs)
        assert any(f"the output store 's3://{output}' stopped answering" in r
                   and "clear the failed tasks of this run to resume" in r for r in reasons), \
            (task, reasons)
        assert all(frame.endswith("airflow/tasks.py") for frame in _innermost_frames(logs)), \
            _innermost_frames(logs)
    done_before = cluster.records(output)  # nothing runs now: what the outage left
    assert 0 < len(done_before) < 20  # stopped in the middle, not after the end
    calls_before = _calls(cluster)

    cluster.rest.api("POST", f"dags/{DOWN_DAG_ID}/clearTaskInstances",
                     {"dry_run": False, "dag_run_id": run_id, "only_failed": True})

    assert cluster.rest.wait(DOWN_DAG_ID, run_id, timeout=180) == "success", cluster.log_tails()
    lines = cluster.s3.cat(f"{output}/parallel_run_step.txt").decode().splitlines()
    assert lines == expected  # complete, exactly once, in order
    run_again = {int(name[1:4]) // 2 for name in _calls(cluster) - calls_before}
    assert run_again and not run_again & done_before


@pytest.fixture
def locked_store(cluster: Cluster):
    """A second S3 server, which checks credentials (and knows none), where every host of the
    cluster reaches it: its endpoint URL."""
    server, port = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    proxy = TcpProxy(port, host=cluster.network.gateway, port=LOCKED_PORT)
    try:
        yield f"http://minio:{LOCKED_PORT}"
    finally:
        proxy.close()
        server.terminate()
        server.wait()


def test_a_refused_credential_fails_the_planner_in_one_line_naming_url_and_connection(
        cluster: Cluster, locked_store: str):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    cluster.rest.api("POST", "connections", {
        "connection_id": LOCKED_CONN_ID, "conn_type": "aws", "login": "AKIAPRTCLUSTERLOCKED",
        "password": secret,
        "extra": json.dumps({"endpoint_url": locked_store, "region_name": "us-east-1"})})

    run_id = cluster.rest.trigger(LOCKED_DAG_ID, {"node_count": 2})

    assert cluster.rest.wait(LOCKED_DAG_ID, run_id, timeout=120) == "failed", \
        cluster.log_tails()
    [planner] = cluster.rest.task_instances(LOCKED_DAG_ID, run_id, "step.planner")
    assert planner["state"] == "failed"
    logs = cluster.task_logs(LOCKED_DAG_ID, run_id, "step.planner")
    [error] = _errors(logs)
    assert "'s3://parallel-run/locked/'" in error and f"connection {LOCKED_CONN_ID!r}" in error
    assert "refused" in error and "\n" not in error
    raised_in = _innermost_frames(logs)  # by the Airflow layer, not from deep inside
    assert raised_in and all(f.endswith("airflow_parallel_run/airflow/tasks.py") for f in raised_in)
    output = cluster.output(LOCKED_DAG_ID, "step", run_id)
    cluster.s3.invalidate_cache()
    written = [*cluster.log_files(), *cluster.s3.find(output)]
    assert [w for w in written if secret.encode() in (
        w.read_bytes() if isinstance(w, Path) else cluster.s3.cat(w))] == []
