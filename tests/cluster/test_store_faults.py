"""The S3 store stops answering in the middle of a cluster run (the proxy in front of it is
closed: connections refused and cut, the store keeps its contents)."""

from __future__ import annotations

import time

from cluster import Cluster

DAG_ID = "prt_cluster_blink"


def test_a_store_stopped_for_ten_seconds_mid_run_is_waited_for(cluster: Cluster):
    expected = cluster.put_files("blink", ["sleep 0.3"] * 80)
    run_id = cluster.rest.trigger(DAG_ID, {"node_count": 2, "mini_batch_size": 2})
    output = cluster.output(DAG_ID, "step", run_id)
    deadline = time.monotonic() + 180
    while len(cluster.records(output)) < 4:
        assert time.monotonic() < deadline, f"the run did not get going\n{cluster.log_tails()}"
        time.sleep(0.5)
    done_before = len(cluster.records(output))

    cluster.proxy.close()
    time.sleep(10)
    cluster.proxy.open()

    assert done_before < 40  # stopped in the middle, not after the end
    assert cluster.rest.wait(DAG_ID, run_id, timeout=180) == "success", cluster.log_tails()
    nodes = cluster.rest.task_instances(DAG_ID, run_id, "step.node")
    assert [t["try_number"] for t in nodes] == [1, 1]  # waited for, not failed and retried
    lines = cluster.s3.cat(f"{output}/parallel_run_step.txt").decode().splitlines()
    assert lines == expected
