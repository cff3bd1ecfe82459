"""The provider's metadata (``apache_airflow_provider`` entry point) and its config section.

``airflow providers list`` shows the package; ``[parallel_run] output_root`` sets where each
run's default output folder is made, ``[parallel_run] output_conn_id`` the connection whose
credentials reach it when a step names none.
"""

from __future__ import annotations

import os
from typing import Any

from .. import __version__

DEFAULT_OUTPUT_ROOT = "{AIRFLOW_HOME}/parallel_run"
DOCUMENTATION_URL = "https://pypi.org/project/airflow-parallel-run/"  # the README, published


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-parallel-run",
        "name": "Parallel Run",
        "description": "Azure ML's ParallelRunStep for Apache Airflow 3: an entry script run over "
                       "mini-batches of files or tables on mapped node tasks.",
        "versions": [__version__],
        "documentation-url": DOCUMENTATION_URL,
        "integrations": [{"integration-name": "Parallel Run", "external-doc-url":
                          DOCUMENTATION_URL, "tags": ["software"]}],
        "operators": [{"integration-name": "Parallel Run",
                       "python-modules": ["airflow_parallel_run.airflow.operator"]}],
        "extra-links": ["airflow_parallel_run.airflow.links.JobReportLink",
                        "airflow_parallel_run.airflow.links.OutputLink"],
        "plugins": [{"name": "parallel_run",
                     "plugin-class": "airflow_parallel_run.airflow.plugin.ParallelRunPlugin"}],
        "config": {
            "parallel_run": {
                "description": "Defaults of ParallelRunOperator.",
                "options": {
                    "output_root": {
                        "description": "Folder (or fsspec URL) under which a step without an "
                                       "explicit output gets one folder per run: "
                                       "<output_root>/<dag_id>/<step>/<run_id>. The index of "
                                       "finished runs that allow_reuse consults lives here too.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/shared/parallel_run",
                        "default": DEFAULT_OUTPUT_ROOT,
                    },
                    "output_conn_id": {
                        "description": "The Airflow connection whose extras are the storage "
                                       "options of output_root (and of a step's output when "
                                       "the step gives no output_conn_id). Empty: none.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "aws_default",
                        "default": "",
                    },
                },
            },
        },
    }


def output_root() -> str:
    """``[parallel_run] output_root``, or its default inside ``AIRFLOW_HOME``."""
    from airflow.sdk.configuration import conf

    value = conf.get("parallel_run", "output_root", fallback=None)
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    if not value:
        value = DEFAULT_OUTPUT_ROOT
    return value.replace("{AIRFLOW_HOME}", home)


def default_output_conn_id() -> str | None:
    """``[parallel_run] output_conn_id``, or None when it is not set."""
    from airflow.sdk.configuration import conf

    return conf.get("parallel_run", "output_conn_id", fallback=None) or None
