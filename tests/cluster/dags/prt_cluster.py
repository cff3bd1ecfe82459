"""The cluster test's own DAGs (copied into every host's DAGs folder, their entry scripts into
``scripts/cluster/`` beside them): input files on the store, read through the connection of
``[parallel_run] output_conn_id``, the output under ``[parallel_run] output_root``."""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_parallel_run import FileDataset
from airflow_parallel_run.airflow import ConfigTemplate, ParallelRunOperator

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "cluster")
STORE = f"s3://{os.environ.get('AIRFLOW__PARALLEL_RUN__OUTPUT_CONN_ID')}@parallel-run/cluster"
LOCKED_CONN_ID = "prt_cluster_locked"  # made by the test: a key the store it names refuses
PARAMS = {
    "mini_batch_size": Param(2, type="integer", minimum=1),
    "node_count": Param(4, type="integer", minimum=1, maximum=8),
    "process_count_per_node": Param(1, type="integer", minimum=1, maximum=4),
}


def step(script: str, folder: str, store: str = STORE, retries: int = 1,
         **settings: object) -> ParallelRunOperator:
    return ParallelRunOperator(
        task_id="step",
        parallel_run_config=ConfigTemplate(
            entry_script=os.path.join(SCRIPTS, script),
            mini_batch_size="{{ params.mini_batch_size }}",
            node_count="{{ params.node_count }}",
            process_count_per_node="{{ params.process_count_per_node }}", **settings),
        inputs=FileDataset.from_files(f"{store}/{folder}/"), allow_reuse=False,
        retries=retries, retry_delay=timedelta(seconds=2))


# Files whose text tells behave.py what to do; a lost node's units are taken over after 10 s.
with DAG("prt_cluster", schedule=None, params=PARAMS):
    step("behave.py", "input", lease_timeout=10)

with DAG("prt_cluster_blink", schedule=None, params=PARAMS):  # the store stops for a while
    step("behave.py", "blink")

# The store stops for good: no retry, the run fails; clearing its failed tasks resumes it.
with DAG("prt_cluster_down", schedule=None, params=PARAMS):
    step("marked.py", "down", retries=0)

with DAG("prt_cluster_locked", schedule=None, params=PARAMS):  # the planner is refused
    step("behave.py", "locked", store=f"s3://{LOCKED_CONN_ID}@parallel-run", retries=0)

with DAG("prt_cluster_cpu", schedule=None, params=PARAMS):  # bench/bench_cluster.py
    step("cpu_work.py", "cpu")
