"""Benchmark: the CPU-bound job of the engine benchmarks on a CeleryExecutor cluster
(tests/cluster/cluster.py: two worker hosts in network namespaces, PostgreSQL, Redis, moto
S3; one task slot per host here).

2,000 files on S3, about 40 ms of pure-Python work each (scripts/cpu_work.py with 500,000
steps: 18 times the engine benchmarks' files, so that the work, not the emulated store
sharing the same two cores, and not the cluster's fixed cost of about 25 s, is what is
measured), mini_batch_size 100, one process per node: one host with one node (the other host's worker stopped) against
two hosts with one node each, same input. Each run is timed from the REST trigger to the
reducer's end (the whole cluster path), and its node phase from the first node's start to
the last node's end; speedup = one host / two hosts. The fixed cost of the cluster path is
the one-host run against ``parallel-run`` with one process on the same input (the same S3
objects, the same store; also on local disk, for scale).
Target: speedup >= 1.6, of the node phase (the work the hosts share; the cluster path's
fixed cost is reported on its own, and the trigger-to-end speedup beside it). Needs root
(network namespaces), PostgreSQL 15 and Redis (`make system-deps`).

    .venv/bin/python bench/bench_cluster.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchlib import BENCH_DIR, engine_command, file_set, fresh_dir, machine, run_timed

sys.path.insert(0, str(BENCH_DIR.parent / "tests" / "cluster"))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
from cluster import BUCKET, Cluster  # noqa: E402

DAG_ID = "prt_cluster_cpu"
FILES = 2_000
STEPS = 500_000  # about 40 ms a file
MINI_BATCH_SIZE = 100
TARGET = 1.6


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def timed_run(cluster: Cluster, node_count: int) -> tuple[float, float, set[str]]:
    """(trigger to reducer end, node phase, node hosts) of one run, in seconds."""
    triggered = datetime.now().astimezone().isoformat()
    run_id = cluster.rest.trigger(DAG_ID, {"node_count": node_count,
                                           "mini_batch_size": MINI_BATCH_SIZE})
    state = cluster.rest.wait(DAG_ID, run_id, timeout=900)
    assert state == "success", f"{DAG_ID} {run_id}: {state}\n{cluster.log_tails()}"
    nodes = cluster.rest.task_instances(DAG_ID, run_id, "step.node")
    reducer = cluster.rest.task_instances(DAG_ID, run_id, "step.reducer")[0]
    node_phase = _seconds(min(t["start_date"] for t in nodes), max(t["end_date"] for t in nodes))
    return _seconds(triggered, reducer["end_date"]), node_phase, {t["hostname"] for t in nodes}


def cli_on_store(cluster: Cluster) -> float:
    """Seconds of ``parallel-run`` (1 process) over the cluster's S3 input, from this host."""
    options = cluster.s3_options
    env = {**os.environ, "AWS_ACCESS_KEY_ID": options["key"],
           "AWS_SECRET_ACCESS_KEY": options["secret"], "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": options["client_kwargs"]["endpoint_url"]}
    command = engine_command("cpu_work.py", Path("/unused"), fresh_dir("cpu-cluster-s3"),
                             MINI_BATCH_SIZE, 1)
    command[command.index("--input") + 1] = f"s3://{BUCKET}/cluster/cpu/"
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def cores_at_rest(cluster: Cluster, seconds: float = 20.0) -> float:
    """Cores the idle cluster uses (scheduler, dag-processor, api-server, Celery workers,
    PostgreSQL, Redis, the store): what the two hosts' workers share the machine with."""
    import psutil

    pids = {int(pid) for namespace in cluster.network.namespace.values()
            for pid in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                                      text=True).stdout.split()}
    if cluster.moto is not None:
        pids.add(cluster.moto.pid)
    processes = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]

    def cpu() -> float:
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    before = cpu()
    time.sleep(seconds)
    return (cpu() - before) / seconds


def main() -> None:
    print(f"bench_cluster: {FILES:,} files x ~40 ms of CPU on S3, mini_batch_size "
          f"{MINI_BATCH_SIZE}, 1 host x 1 node vs 2 hosts x 1 node; {machine()}")
    print(f"  load average before: {os.getloadavg()}")
    local = file_set("cpu-heavy-2k", FILES, lambda i: f"{i} {STEPS}".encode())
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="bench-cluster-")), concurrency=1)
    try:
        started = time.monotonic()
        cluster.start()
        print(f"  cluster up in {time.monotonic() - started:.0f} s")
        print(f"  the cluster at rest uses {cores_at_rest(cluster):.2f} of the machine's cores")
        cluster.s3.pipe({f"{BUCKET}/cluster/cpu/{i:07d}.txt": f"{i} {STEPS}".encode()
                         for i in range(FILES)})
        two_total, two_nodes, hosts = timed_run(cluster, 2)
        print(f"  2 hosts ({', '.join(sorted(hosts))}): trigger to reducer end "
              f"{two_total:.1f} s, node phase {two_nodes:.1f} s")
        cluster.network.kill("w2")
        one_total, one_nodes, hosts = timed_run(cluster, 1)
        print(f"  1 host ({', '.join(sorted(hosts))}): trigger to reducer end "
              f"{one_total:.1f} s, node phase {one_nodes:.1f} s")
        s3_run = cli_on_store(cluster)
        print(f"  parallel-run, 1 process, the same S3 input: {s3_run:.1f} s")
    finally:
        cluster.stop()
    local_run = run_timed(engine_command("cpu_work.py", local, fresh_dir("cpu-cluster-local"),
                                         MINI_BATCH_SIZE, 1))
    print(f"  parallel-run, 1 process, the files on local disk: {local_run.seconds:.1f} s")
    print(f"  speedup, trigger to reducer end: {one_total / two_total:.2f}x; node phase: "
          f"{one_nodes / two_nodes:.2f}x (target >= {TARGET}x)")
    print(f"  fixed cost of the cluster path (1 host - parallel-run on S3): "
          f"{one_total - s3_run:.1f} s")
    print(f"  load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
