"""The step under real Airflow services: scheduler, dag-processor and api-server on loopback,
LocalExecutor on SQLite; runs are triggered and watched through the REST API.

Here every task runs in a process of its own, as in production: node tasks run at the same
time, and a node task can be killed and retried by Airflow.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from airflow_runs import (
    AIRFLOW,
    STEP,
    TEST_DAGS,
    AirflowHome,
    RestApi,
    make_files,
    safe_run_id,
    wait_for,
    write_editable_script,
)

from airflow_parallel_run.results import Records
from airflow_parallel_run.storage import LocalLocation

DAG_ID = "prt_services"
INPUT_FILES = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Services:
    home: AirflowHome
    url: str
    data: Path
    expected: list[str]
    logs: Path  # the services' own output

    @property
    def rest(self) -> RestApi:
        return RestApi(self.url)

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        return self.rest.api(method, path, body)

    def trigger(self, conf: dict, dag_id: str = DAG_ID) -> str:
        return self.rest.trigger(dag_id, conf)

    def wait(self, run_id: str, timeout: float = 180, dag_id: str = DAG_ID) -> str:
        return self.rest.wait(dag_id, run_id, timeout)

    def tasks(self, run_id: str, task: str, dag_id: str = DAG_ID) -> list[dict]:
        return self.rest.task_instances(dag_id, run_id, f"{STEP}.{task}")

    def log_tails(self) -> str:
        return "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in self.logs.glob("*.log"))

    def output_dir(self, run_id: str, dag_id: str = DAG_ID) -> Path:
        return self.data / "out" / dag_id / STEP / safe_run_id(run_id)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("services")
    port = free_port()
    data = root / "data"
    expected = make_files(data / "input", ["sleep 0.4"] * INPUT_FILES)
    make_files(data / "failing", ["fail"] + ["sleep 1"] * (INPUT_FILES - 1))
    home = AirflowHome(
        root / "home", TEST_DAGS,
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="8",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT="120",
        PRT_DATA=str(data),
        AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT=str(data / "out"),
    )
    home.path.mkdir()
    home.migrate()
    logs = root / "logs"
    logs.mkdir()
    processes = []
    for command in (["api-server", "--workers", "1"], ["scheduler"], ["dag-processor"]):
        with open(logs / f"{command[0]}.log", "w") as log:
            processes.append(subprocess.Popen(
                [AIRFLOW, *command], env=home.env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True))
    services = Services(home, f"http://127.0.0.1:{port}", data, expected, logs)
    try:
        wait_for("api-server", lambda: services.api("GET", "monitor/health"), 90, logs)
        wait_for(f"DAG {DAG_ID}", lambda: services.api("GET", f"dags/{DAG_ID}"), 90, logs)
        yield services
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_run_triggered_through_the_rest_api_runs_its_nodes_at_the_same_time(services: Services):
    run_id = services.trigger({"node_count": 2, "mini_batch_size": 2})

    assert services.wait(run_id) == "success"
    first, second = services.tasks(run_id, "node")
    start = [datetime.fromisoformat(t["start_date"]) for t in (first, second)]
    end = [datetime.fromisoformat(t["end_date"]) for t in (first, second)]
    assert start[0] < end[1] and start[1] < end[0]  # the two node tasks overlapped
    assert first["rendered_map_index"] == "node 1 of 2: 4 mini-batches"
    output = services.output_dir(run_id)
    assert (output / "parallel_run_step.txt").read_text().splitlines() == services.expected


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _records(output: Path) -> set[int]:
    return set(Records(LocalLocation(str(output))).indices())


def test_node_task_killed_with_sigkill_is_retried_and_resumes(services: Services):
    run_id = services.trigger({"node_count": 2, "mini_batch_size": 1})
    output = services.output_dir(run_id)
    shard = range(0, INPUT_FILES // 2)  # node 1's mini-batches

    deadline = time.monotonic() + 120
    while len(_records(output) & set(shard)) < 3:
        assert time.monotonic() < deadline, (
            f"node 1 did not get going: {services.tasks(run_id, 'node')}\n{services.log_tails()}")
        time.sleep(0.1)
    calls = [tuple(map(int, line.split())) for line in _lines(output / "calls.log")]
    node_pid = next(node for index, _, node in calls if index in shard)
    workers = {worker for _, worker, node in calls if node == node_pid}
    os.kill(node_pid, signal.SIGKILL)
    finished_before_kill = _records(output) & set(shard)
    assert 3 <= len(finished_before_kill) < len(shard)  # killed half-way through its share

    assert services.wait(run_id) == "success"
    first, _ = services.tasks(run_id, "node")
    assert first["try_number"] == 2
    assert (output / "parallel_run_step.txt").read_text().splitlines() == services.expected
    calls = Counter(int(line.split()[0]) for line in _lines(output / "calls.log"))
    assert all(calls[index] == 1 for index in finished_before_kill)  # not run again
    assert set(calls) == set(range(INPUT_FILES))
    assert not [pid for pid in workers if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_a_threshold_broken_on_one_node_stops_the_others_soon_after(services: Services):
    dag_id = "prt_services_failing"
    run_id = services.trigger({"node_count": 2, "mini_batch_size": 1, "error_threshold": 0},
                              dag_id)

    assert services.wait(run_id, dag_id=dag_id) == "failed"
    assert [t["state"] for t in services.tasks(run_id, "node", dag_id)] == ["failed", "failed"]
    calls = [int(line.split()[0])
             for line in _lines(services.output_dir(run_id, dag_id) / "calls.log")]
    second_share = range(INPUT_FILES // 2, INPUT_FILES)  # 8 s of run() if nothing stopped it
    assert len([i for i in calls if i in second_share]) < len(second_share)
    result = (services.output_dir(run_id, dag_id) / "logs" / "job_result.txt").read_text()
    assert "error_threshold exceeded: 1 items failed, error_threshold is 0" in result



def _task_log(services: Services, run_id: str, task: str) -> str:
    folder = f"run_id={run_id}"
    return "".join(p.read_text() for p in (services.home.path / "logs").rglob("*.log")
                   if folder in str(p) and f"task_id={STEP}.{task}" in str(p))


def test_clearing_failed_tasks_after_a_script_edit_fails_instead_of_mixing_versions(
        services: Services):
    dag_id = "prt_editable"
    write_editable_script(services.data, "v1", fails=True)
    run_id = services.trigger({"node_count": 1, "mini_batch_size": 1, "error_threshold": 0},
                              dag_id)
    assert services.wait(run_id, dag_id=dag_id) == "failed"
    write_editable_script(services.data, "v2", fails=False)

    services.api("POST", f"dags/{dag_id}/clearTaskInstances",
                 {"dag_run_id": run_id, "only_failed": True, "dry_run": False,
                  "reset_dag_runs": True})

    assert services.wait(run_id, dag_id=dag_id) == "failed"
    changed = ("the entry script changed since this run was planned: clear the whole step "
               "(planner) to start again")
    assert changed in _task_log(services, run_id, "node")
    assert changed in _task_log(services, run_id, "reducer")
    output = services.output_dir(run_id, dag_id) / "parallel_run_step.txt"
    assert not output.exists() or "v2" not in output.read_text()


def test_a_miss_after_a_cleared_node_with_an_edited_script_blames_the_script(
        services: Services):
    dag_id = "prt_editable"
    write_editable_script(services.data, "v1", fails=False)
    conf = {"node_count": 1, "mini_batch_size": 4}
    first = services.trigger(conf, dag_id)
    assert services.wait(first, dag_id=dag_id) == "success"
    write_editable_script(services.data, "v2", fails=False)
    services.api("POST", f"dags/{dag_id}/clearTaskInstances",
                 {"dag_run_id": first, "only_failed": False, "dry_run": False,
                  "task_ids": [f"{STEP}.node", f"{STEP}.reducer"], "reset_dag_runs": True})
    services.wait(first, dag_id=dag_id)

    second = services.trigger(conf, dag_id)

    assert services.wait(second, dag_id=dag_id) == "success"
    planner = _task_log(services, second, "planner")
    assert f"reuse: MISS: the entry script or its folder changed since run {first!r}" in planner
    assert "the inputs changed" not in planner
