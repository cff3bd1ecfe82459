"""digit_identification: Azure ML's ParallelRunStep sample, done with ParallelRunOperator.

797 handwritten digits (PNG files made on the first run from data that ships with the example,
nothing downloaded) are identified by ``scripts/digits/identify.py`` (beside this file): its ``init()`` fits a
3-nearest-neighbours model on the training digits of the ``labels`` side input, its ``run()``
returns ``"<file>: <digit>"`` for each image. Trigger it from the UI to change the Params, or
``airflow dags test digit_identification -c '{"mini_batch_size": 20}'``.

The images live in ``$DIGITS_DATA`` (default ``$AIRFLOW_HOME/data/digits``), a folder or, when
node tasks run on several machines, an object-store URL such as
``s3://conn_id@bucket/digits`` (the connection holds the credentials; the first task copies
the data there once); the output in a folder per run under ``[parallel_run] output_root``.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

from airflow.sdk import DAG, Param, task

from airflow_parallel_run import FileDataset, SideInput
from airflow_parallel_run.airflow import ConfigTemplate, ParallelRunOperator

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "digits")
DATA = os.environ.get("DIGITS_DATA") or os.path.join(
    os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "data", "digits")

with DAG(
    dag_id="digit_identification",
    schedule=None,
    catchup=False,
    tags=["parallel_run", "example"],
    doc_md=__doc__,
    params={
        "mini_batch_size": Param(50, type="integer", minimum=1, maximum=1000,
                                 title="Mini-batch size",
                                 description="Images per run() call."),
        "node_count": Param(2, type="integer", minimum=1, maximum=16, title="Nodes",
                            description="Mapped node tasks the mini-batches are shared out to."),
        "process_count_per_node": Param(2, type="integer", minimum=1, maximum=16,
                                        title="Processes per node",
                                        description="Worker processes on each node."),
        "logging_level": Param("INFO", type="string", enum=["WARNING", "INFO", "DEBUG"],
                               title="Logging level",
                               description="Level of EntryScript().logger."),
        "run_invocation_timeout": Param(60, type="integer", minimum=1, maximum=3600,
                                        title="run() timeout (s)",
                                        description="Seconds one run() call may take."),
        "run_max_try": Param(3, type="integer", minimum=1, maximum=10, title="Tries",
                             description="Tries of a mini-batch before its images count "
                                         "as failed."),
        "error_threshold": Param(-1, type="integer", minimum=-1, title="Error threshold",
                                 description="Failed images allowed over the whole input; "
                                             "-1 allows any number."),
    },
):

    @task
    def make_digit_images() -> str:
        """The PNG files and labels, written once from the example's data."""
        if EXAMPLE not in sys.path:
            sys.path.insert(0, EXAMPLE)
        from prepare import make_images

        if "://" in DATA:  # an object store: made locally, copied there once
            sys.path.insert(0, os.path.dirname(EXAMPLE))
            from object_store import publish

            return publish(make_images, DATA, "labels/labels.csv")
        return make_images(DATA)

    labels = SideInput(os.path.join(DATA, "labels"), name="labels")
    identify = ParallelRunOperator(
        task_id="identify",
        parallel_run_config=ConfigTemplate(
            entry_script="identify.py",
            source_directory=EXAMPLE,
            mini_batch_size="{{ params.mini_batch_size }}",
            node_count="{{ params.node_count }}",
            process_count_per_node="{{ params.process_count_per_node }}",
            logging_level="{{ params.logging_level }}",
            run_invocation_timeout="{{ params.run_invocation_timeout }}",
            run_max_try="{{ params.run_max_try }}",
            error_threshold="{{ params.error_threshold }}",
            append_row_file_name="digits.txt",
        ),
        inputs=FileDataset.from_files(os.path.join(DATA, "images"), name="digit_images"),
        arguments=["--labels_dir", labels],
        retries=1,  # a node task that dies is tried again and resumes where it stopped
        retry_delay=timedelta(seconds=10),
    )
    make_digit_images() >> identify
