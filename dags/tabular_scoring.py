"""tabular_scoring: a CSV table of loan applications scored with a DataFrame result.

20,000 applications in four CSV files (made on the first run from a fixed seed) are split
into mini-batches of about ``mini_batch_size`` bytes, never across a file boundary.
``scripts/tabular/score.py`` (beside this file) loads its model in ``init()`` and returns a DataFrame
(id, score, decision) for each mini-batch; the output is ``scores.csv`` with one header line.

The table lives in ``$TABULAR_DATA`` (default ``$AIRFLOW_HOME/data/applications``), a folder
or an object-store URL such as ``s3://conn_id@bucket/applications`` (the first task copies
the table there once).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

from airflow.sdk import DAG, Param, task

from airflow_parallel_run import TabularDataset
from airflow_parallel_run.airflow import ConfigTemplate, ParallelRunOperator

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "tabular")
DATA = os.environ.get("TABULAR_DATA") or os.path.join(
    os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "data", "applications")

with DAG(
    dag_id="tabular_scoring",
    schedule=None,
    catchup=False,
    tags=["parallel_run", "example"],
    doc_md=__doc__,
    params={
        "mini_batch_size": Param("64KB", type="string", pattern=r"^\d+([kKmMgG][bB])?$",
                                 title="Mini-batch size",
                                 description="About this many bytes of CSV per run() call "
                                             "(e.g. 64KB, 1MB)."),
        "node_count": Param(2, type="integer", minimum=1, maximum=16, title="Nodes",
                            description="Mapped node tasks the mini-batches are shared out to."),
        "process_count_per_node": Param(2, type="integer", minimum=1, maximum=16,
                                        title="Processes per node",
                                        description="Worker processes on each node."),
        "error_threshold": Param(0, type="integer", minimum=-1, title="Error threshold",
                                 description="Failed rows allowed; -1 allows any number."),
    },
):

    @task
    def make_applications_table() -> str:
        """The CSV files, written once."""
        if EXAMPLE not in sys.path:
            sys.path.insert(0, EXAMPLE)
        from make_table import FILES, make_table

        if "://" in DATA:  # an object store: made locally, copied there once
            sys.path.insert(0, os.path.dirname(EXAMPLE))
            from object_store import publish

            return publish(make_table, DATA, f"applications_{FILES - 1}.csv")
        return make_table(DATA)

    score = ParallelRunOperator(
        task_id="score",
        parallel_run_config=ConfigTemplate(
            entry_script="score.py",
            source_directory=EXAMPLE,
            mini_batch_size="{{ params.mini_batch_size }}",
            node_count="{{ params.node_count }}",
            process_count_per_node="{{ params.process_count_per_node }}",
            error_threshold="{{ params.error_threshold }}",
            append_row_file_name="scores.csv",
            append_row_dataframe_header=True,
            append_row_separator=",",
        ),
        inputs=TabularDataset.from_delimited_files(DATA, name="applications"),
        retries=1,  # a node task that dies is tried again and resumes where it stopped
        retry_delay=timedelta(seconds=10),
    )
    make_applications_table() >> score
