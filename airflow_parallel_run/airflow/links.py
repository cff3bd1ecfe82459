"""The step's extra links in the Airflow UI: "Job report" and "Output" on its three tasks.

Airflow 3 computes a link's URL in the task and keeps it in XCom; the URL points at the
package's plugin (:mod:`.plugin`), which serves the page to users allowed to see the DAG.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

PLUGIN_PREFIX = "/parallel-run"  # where the api-server mounts the plugin's app
OUTPUT_LOCATION_KEY = "output_location"  # the planner's XCom: {"output": ..., "conn_id": ...}


def step_url(dag_id: str, run_id: str, step: str, page: str) -> str:
    """The plugin's page of one run of one step (``page``: "report" or "output")."""
    from airflow.sdk.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    parts = [quote(p, safe="") for p in (dag_id, run_id, step)]
    return f"{base}{PLUGIN_PREFIX}/dags/{parts[0]}/runs/{parts[1]}/steps/{parts[2]}/{page}"


class _StepLink(BaseOperatorLink):
    page = ""

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        step = operator.task_id.rsplit(".", 1)[0]  # the task group: "<step>.planner" -> "<step>"
        return step_url(ti_key.dag_id, ti_key.run_id, step, self.page)


class JobReportLink(_StepLink):
    """logs/job_report.html of the run."""

    name = "Job report"
    page = "report"


class OutputLink(_StepLink):
    """A listing of the run's output folder."""

    name = "Output"
    page = "output"
