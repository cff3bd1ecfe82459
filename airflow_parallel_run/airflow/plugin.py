"""The package's Airflow plugin: a FastAPI app, mounted by the api-server, that serves each
run's ``logs/job_report.html`` and its output listing behind the "Job report" and "Output"
links.

Every route asks the api-server's auth manager, as the api-server's own routes do: the user
must be authenticated and allowed to read that DAG's task instances. The output location
comes from the planner's XCom (``output_location``: the rendered output and the name of its
connection, never credentials); a requested file must lie inside it.
"""

from __future__ import annotations

import html
import posixpath
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

from .links import OUTPUT_LOCATION_KEY, PLUGIN_PREFIX

REPORT = "logs/job_report.html"

app = FastAPI(title="airflow-parallel-run", description="Job reports and outputs of steps")
_READ = [Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))]
_STEP = "/dags/{dag_id}/runs/{run_id}/steps/{step}"


def _location(session: Any, dag_id: str, run_id: str, step: str) -> Any:
    """The run's output location, opened with its connection's options."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    from ..storage import open_location

    value = session.execute(select(XComModel.value).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id,
        XComModel.task_id == f"{step}.planner", XComModel.key == OUTPUT_LOCATION_KEY)).scalar()
    data = XComModel.deserialize_value(_Row(value)) if value is not None else None
    if not isinstance(data, dict) or not data.get("output"):
        raise HTTPException(404, f"{dag_id} run {run_id}: step {step!r} has no output yet")
    options: dict[str, Any] = {}
    if data.get("conn_id"):
        from .connections import storage_options

        options = storage_options(data["conn_id"])
    return open_location(data["output"], options)


class _Row:
    """What XComModel.deserialize_value reads: an object with ``.value``."""

    def __init__(self, value: Any) -> None:
        self.value = value


def safe_relative(path: str) -> str:
    """``path`` as a path inside the output; 400 for anything that could leave it."""
    if (not path or "\\" in path or "\x00" in path or "%" in path or path.startswith("/")
            or "://" in path):
        raise HTTPException(400, f"path {path!r}: must be a relative path inside the output")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../") or normal.startswith("/"):
        raise HTTPException(400, f"path {path!r}: must stay inside the output")
    return normal


@app.get(_STEP + "/report", dependencies=_READ, response_class=HTMLResponse)
def job_report(dag_id: str, run_id: str, step: str, session: SessionDep) -> HTMLResponse:
    data = _location(session, dag_id, run_id, step).read_bytes(REPORT)
    if data is None:
        raise HTTPException(404, f"{dag_id} run {run_id}: no {REPORT} yet (the reducer "
                                 "writes it)")
    return HTMLResponse(data)


@app.get(_STEP + "/output", dependencies=_READ, response_class=HTMLResponse)
def output_listing(dag_id: str, run_id: str, step: str, session: SessionDep,
                   path: str = ".") -> HTMLResponse:
    rel = "" if path == "." else safe_relative(path)
    location = _location(session, dag_id, run_id, step)
    names = sorted(location.listdir(rel))
    items = "".join(
        f'<li><a href="{"output" if _is_dir(location, rel, n) else "file"}?path='
        f'{html.escape(posixpath.join(rel, n), quote=True)}">{html.escape(n)}</a></li>'
        for n in names)
    title = html.escape(location.display(rel))
    return HTMLResponse(f"<!doctype html><title>{title}</title><h1>{title}</h1><ul>{items}</ul>")


def _is_dir(location: Any, rel: str, name: str) -> bool:
    return bool(location.listdir(posixpath.join(rel, name)))


@app.get(_STEP + "/file", dependencies=_READ)
def output_file(dag_id: str, run_id: str, step: str, path: str,
                session: SessionDep) -> Response:
    data = _location(session, dag_id, run_id, step).read_bytes(safe_relative(path))
    if data is None:
        raise HTTPException(404, f"{path}: not in the output")
    media = "text/html" if path.endswith(".html") else "text/plain"
    return Response(data, media_type=media)


class ParallelRunPlugin(AirflowPlugin):
    """Serves the pages behind the step's extra links."""

    name = "parallel_run"
    fastapi_apps = [{"app": app, "url_prefix": PLUGIN_PREFIX, "name": "Parallel Run"}]
