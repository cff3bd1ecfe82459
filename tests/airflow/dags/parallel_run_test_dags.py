"""The DAGs of tests/airflow. Each test points ``PRT_DATA`` at a folder of its own whose
``input/`` holds the files to process (their text tells scripts/behave.py what to do).
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_parallel_run import FileDataset, SideInput
from airflow_parallel_run.airflow import ConfigTemplate, ParallelRunOperator

DATA = os.environ.get("PRT_DATA", "/nonexistent")
SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")

PARAMS = {
    "mini_batch_size": Param(5, type="integer", minimum=1, description="files per mini-batch"),
    "node_count": Param(2, type="integer", minimum=1, maximum=8),
    "process_count_per_node": Param(1, type="integer", minimum=1, maximum=4),
    "run_max_try": Param(1, type="integer", minimum=1),
    "run_invocation_timeout": Param(60, type="integer", minimum=1),
    # No minimum here: the planner's own rule (error_threshold >= -1) is what refuses -5.
    "error_threshold": Param(-1, type="integer"),
}


def config(script: str = "behave.py") -> ConfigTemplate:
    return ConfigTemplate(
        entry_script=os.path.join(SCRIPTS, script),
        mini_batch_size="{{ params.mini_batch_size }}",
        node_count="{{ params.node_count }}",
        process_count_per_node="{{ params.process_count_per_node }}",
        run_max_try="{{ params.run_max_try }}",
        run_invocation_timeout="{{ params.run_invocation_timeout }}",
        error_threshold="{{ params.error_threshold }}",
    )


def files(folder: str = "input") -> FileDataset:
    return FileDataset.from_files(os.path.join(DATA, folder), name="files")


with DAG("prt_files", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", parallel_run_config=config(), inputs=files())

with DAG("prt_broken_init", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", parallel_run_config=config("broken_init.py"),
                        inputs=files())

with DAG("prt_node_timeout", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", parallel_run_config=config(), inputs=files(),
                        execution_timeout=timedelta(seconds=8))

# One output folder for every run of the DAG: one live run in it at a time.
with DAG("prt_fixed_output", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", parallel_run_config=config(), inputs=files(),
                        output=os.path.join(DATA, "fixed_out"))

# Nodes share the work: a node task killed by its timeout, no retries; the others finish its
# units once its claims have not been renewed for lease_timeout.
with DAG("prt_lost_node", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", inputs=files(), execution_timeout=timedelta(seconds=8),
                        parallel_run_config=ConfigTemplate(
                            entry_script=os.path.join(SCRIPTS, "behave.py"), mini_batch_size=1,
                            node_count=3, lease_timeout=2))

# For the runs with real services: a node task that dies is retried, and resumes.
with DAG("prt_services", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", parallel_run_config=config(), inputs=files(),
                        allow_reuse=False, retries=1, retry_delay=timedelta(seconds=1))

with DAG("prt_services_failing", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", parallel_run_config=config(), inputs=files("failing"),
                        allow_reuse=False)

# Storage credentials from an Airflow connection: input, side input and output on S3.
with DAG("prt_s3", schedule=None, params=PARAMS):
    S3 = os.environ.get("PRT_S3", "s3://nonexistent")
    labels = SideInput(f"{S3}/side/labels.txt", name="labels", conn_id="prt_s3")
    ParallelRunOperator(task_id="step", parallel_run_config=config(),
                        inputs=FileDataset.from_files(f"{S3}/input/", conn_id="prt_s3"),
                        arguments=["--labels", labels], output=f"{S3}/output",
                        output_conn_id="prt_s3")

# The same on S3, with no output connection in the DAG: [parallel_run] output_conn_id gives it,
# and the default output goes under an s3:// output_root.
with DAG("prt_s3_default_output", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", parallel_run_config=config(), allow_reuse=False,
                        inputs=FileDataset.from_files(f"{S3}/input/", conn_id="prt_s3"))

# An entry script the test edits between a run and its clear: PRT_DATA/script/score.py.
def editable_config() -> ConfigTemplate:
    return ConfigTemplate(
        entry_script=os.path.join(DATA, "script", "score.py"),
        mini_batch_size="{{ params.mini_batch_size }}", node_count="{{ params.node_count }}",
        error_threshold="{{ params.error_threshold }}")


with DAG("prt_editable", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", inputs=files(), parallel_run_config=editable_config())

# The same with one output folder for every run: a later run overwrites an earlier one's.
with DAG("prt_editable_fixed", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", inputs=files(), parallel_run_config=editable_config(),
                        output=os.path.join(DATA, "fixed"))

# output= is templated: rendered by the planner for each run.
with DAG("prt_templated_output", schedule=None,
         params={**PARAMS, "tag": Param("a", type="string")}):
    ParallelRunOperator(task_id="step", parallel_run_config=config(), inputs=files(),
                        output=os.path.join(DATA, "scores", "{{ params.tag }}", "{{ run_id }}"))

# Node-only task arguments: a bigger pool share, another queue, a pod for the workers.
with DAG("prt_node_kwargs", schedule=None, params=PARAMS):
    ParallelRunOperator(task_id="step", parallel_run_config=config(), inputs=files(),
                        queue="light", retries=2,
                        node_kwargs={"pool_slots": 4, "queue": "workers", "executor_config": {
                            "pod_override": {"spec": {"containers": [
                                {"name": "base", "resources": {"requests": {"cpu": "4"}}}]}}}})

# A standard aws connection, named by ObjectStoragePaths (s3://conn_id@bucket/...).
with DAG("prt_s3_object_storage_path", schedule=None, params=PARAMS):
    from airflow.sdk import ObjectStoragePath

    BUCKET = os.environ.get("PRT_BUCKET", "nonexistent")
    ParallelRunOperator(
        task_id="step", parallel_run_config=config(), allow_reuse=False,
        inputs=FileDataset.from_files(ObjectStoragePath(f"s3://prt_aws@{BUCKET}/input/")),
        arguments=["--labels", SideInput(ObjectStoragePath(f"s3://prt_aws@{BUCKET}/side/l.txt"),
                                         name="labels")],
        output=ObjectStoragePath(f"s3://prt_aws@{BUCKET}/output"))
