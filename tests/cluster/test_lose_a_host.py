"""A worker host lost in the middle of a run (its Celery worker and every process of it
SIGKILLed): the other host finishes the lost node tasks' units once their leases expire, the
lost tasks are retried there and resume, and the run succeeds with every item once."""

from __future__ import annotations

import time

import psutil
from cluster import Cluster

DAG_ID = "prt_cluster"
FILES = 120  # 60 mini-batches of 2 files, 1 s each: 15 s per node


def _wait_until_mid_run(cluster: Cluster, run_id: str, output: str, lost: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        nodes = cluster.rest.task_instances(DAG_ID, run_id, "step.node")
        running = [t for t in nodes if t["hostname"] == lost and t["state"] == "running"]
        if running and len(cluster.records(output)) >= 6:
            return
        time.sleep(0.5)
    raise AssertionError(f"no node task got going on {lost}\n{cluster.log_tails()}")


def _leftovers(cluster: Cluster, host: str, before: set[int]) -> list[str]:
    """Processes of ``host`` that were not there before the run, once they had time to end."""
    deadline = time.monotonic() + 30
    while True:
        new = [pid for pid in cluster.network.pids(host) if pid not in before]
        if not new or time.monotonic() > deadline:
            break
        time.sleep(1)
    return [" ".join(psutil.Process(pid).cmdline()) for pid in new if psutil.pid_exists(pid)]


def test_a_lost_worker_host_leaves_a_complete_run_and_no_orphan_on_the_other(cluster: Cluster):
    expected = cluster.put_files("input", ["sleep 0.5"] * FILES)
    before = set(cluster.network.pids("w1"))
    run_id = cluster.rest.trigger(DAG_ID, {"node_count": 4, "mini_batch_size": 2})
    output = cluster.output(DAG_ID, "step", run_id)
    _wait_until_mid_run(cluster, run_id, output, lost="w2")

    cluster.network.kill("w2")
    try:
        state = cluster.rest.wait(DAG_ID, run_id, timeout=240)
    finally:
        cluster.restart_worker("w2")

    assert state == "success", cluster.log_tails()
    lines = cluster.s3.cat(f"{output}/parallel_run_step.txt").decode().splitlines()
    assert lines == expected  # 0 lost, 0 duplicates, in order
    assert _leftovers(cluster, "w1", before) == []
