"""The "Job report" and "Output" links: the package's plugin in a real api-server.

A step is run with ``airflow dags test``; then an api-server serves its pages, to the users
its auth manager lets read that DAG only: the simple auth manager with two users, one of whom
may not read the step's DAG (one_dag_denied.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from airflow_runs import AIRFLOW, HERE, TEST_DAGS, AirflowHome, make_files
from one_dag_denied import DENIED_USER
from test_services import free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("links")
    port = free_port()
    (root / "passwords.json").write_text(json.dumps({"viewer": "pw-viewer",
                                                     DENIED_USER: "pw-outsider"}))
    home = AirflowHome(root / "home", TEST_DAGS,
                       AIRFLOW__CORE__AUTH_MANAGER="one_dag_denied.OneDagDenied",
                       PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
                       AIRFLOW__API__HOST="127.0.0.1", AIRFLOW__API__PORT=str(port),
                       AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
                       AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"viewer:viewer,{DENIED_USER}:viewer",
                       AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(root / "passwords.json"),
                       # the checkout is not installed with its airflow.plugins entry point
                       AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS="False")
    home.path.mkdir()
    home.migrate()
    make_files(root / "data" / "input", ["ok a", "ok b", "ok c"])
    run = home.dags_test("prt_files", root / "data")
    assert run.state == "success", run.log[-3000:]
    log = (root / "api.log").open("w")
    server = subprocess.Popen([AIRFLOW, "api-server", "--workers", "1"], env=home.env(),
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, (
                root / "api.log").read_text()[-3000:]
            time.sleep(0.5)
    yield home, run, url
    server.terminate()
    server.wait(30)


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def token(url: str, user: str = "viewer") -> str:
    request = urllib.request.Request(f"{url}/auth/token", method="POST",
                                     data=json.dumps({"username": user,
                                                      "password": f"pw-{user}"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def stored_link(home: AirflowHome, run, task: str, key: str) -> str:
    with sqlite3.connect(home.path / "airflow.db") as db:
        (value,) = db.execute("select value from xcom where run_id = ? and task_id = ? and "
                              "key = ?", (run.run_id, task, key)).fetchone()
    return json.loads(value)


def test_finished_tasks_store_the_job_report_link(served):
    home, run, url = served

    link = stored_link(home, run, "step.reducer", "_link_JobReportLink")

    assert link.startswith(f"{url}/parallel-run/dags/prt_files/runs/")
    assert link.endswith("/steps/step/report")


def test_report_needs_an_authenticated_user(served):
    home, run, _ = served

    status, _ = get(stored_link(home, run, "step.reducer", "_link_JobReportLink"))

    assert status in (401, 403)


def test_report_refuses_a_bad_token(served):
    home, run, _ = served

    status, body = get(stored_link(home, run, "step.reducer", "_link_JobReportLink"),
                       "not-a-token")

    assert status in (401, 403)
    assert 'id="job-status"' not in body


@pytest.mark.parametrize("page", ["report", "output", "file?path=parallel_run_step.txt"])
def test_a_user_who_may_not_read_the_dag_gets_403_and_nothing_of_it(served, page: str):
    home, run, url = served
    bearer = token(url, DENIED_USER)
    assert get(f"{url}/api/v2/pools", bearer)[0] == 200  # signed in: only this DAG is denied
    report = stored_link(home, run, "step.reducer", "_link_JobReportLink")

    status, body = get(report.replace("/report", f"/{page}"), bearer)

    assert status == 403
    assert 'id="job-status"' not in body and "f000.txt" not in body
    assert "parallel_run_step.txt" not in body


def test_authenticated_user_gets_the_report_and_the_output(served):
    home, run, url = served
    bearer = token(url)

    status, page = get(stored_link(home, run, "step.reducer", "_link_JobReportLink"), bearer)
    assert status == 200 and "<html" in page.lower()
    status, listing = get(stored_link(home, run, "step.planner", "_link_OutputLink"), bearer)
    assert status == 200 and "parallel_run_step.txt" in listing


@pytest.mark.parametrize("path", ["../../../../etc/passwd", "/etc/passwd",
                                  "..%2F..%2F..%2Fetc%2Fpasswd", "logs/../../x"])
def test_no_path_outside_the_output_can_be_read(served, path: str):
    home, run, url = served
    report = stored_link(home, run, "step.reducer", "_link_JobReportLink")

    status, body = get(report.replace("/report", f"/file?path={path}"), token(url))

    assert status == 400, body
    assert "root:" not in body


def test_headless_chromium_shows_the_report_once_logged_in(served, tmp_path):
    """The browser carries the api-server's session cookie, as after the UI's login page."""
    import asyncio
    import shutil

    import websockets

    home, run, url = served
    link = stored_link(home, run, "step.reducer", "_link_JobReportLink")
    port = free_port()
    browser = subprocess.Popen(
        [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--no-first-run", "--disable-dev-shm-usage", f"--remote-debugging-port={port}",
         f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
                    pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.3)

        async def page_after(cookie: str | None) -> str:
            async with websockets.connect(pages[0]["webSocketDebuggerUrl"],
                                          max_size=None) as cdp:
                ids = iter(range(1, 100))

                async def call(method: str, **params) -> dict:
                    n = next(ids)
                    await cdp.send(json.dumps({"id": n, "method": method, "params": params}))
                    while True:
                        answer = json.loads(await cdp.recv())
                        if answer.get("id") == n:
                            return answer.get("result", {})

                await call("Network.clearBrowserCookies")
                if cookie:
                    await call("Network.setCookie", name="_token", value=cookie, url=url)
                await call("Page.navigate", url=link)
                await asyncio.sleep(3)
                done = await call("Runtime.evaluate",
                                  expression="document.documentElement.outerHTML")
                return done["result"]["value"]

        anonymous = asyncio.run(page_after(None))
        logged_in = asyncio.run(page_after(token(url)))
    finally:
        browser.terminate()
        browser.wait(30)

    assert 'id="job-status"' not in anonymous
    assert 'id="job-status"' in logged_in and "SUCCESS" in logged_in
