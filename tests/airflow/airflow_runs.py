"""Real Airflow runs for the tests: a temporary AIRFLOW_HOME with a migrated SQLite database.

Airflow reads its configuration when it is imported, so it never runs in the pytest process:
every run is an ``airflow`` command in a subprocess with its own environment, and the tests
read what happened from the metadata database (sqlite3) and the output folders.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
HERE = Path(__file__).resolve().parent
TEST_DAGS = HERE / "dags"
REPO_DAGS = HERE.parent.parent / "dags"
STEP = "step"  # the task_id of the ParallelRunOperator in the test DAGs


def safe_run_id(run_id: str) -> str:
    """How a run id appears in the default output folder (tasks.default_output)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


@dataclass
class TaskRun:
    task_id: str
    map_index: int
    state: str | None
    label: str | None  # the rendered map_index_template
    try_number: int


@dataclass
class DagRun:
    """What one ``airflow dags test`` left behind."""

    dag_id: str
    run_id: str
    state: str
    log: str
    output_root: Path
    tasks: list[TaskRun] = field(default_factory=list)
    step: str = STEP  # the task_id of the ParallelRunOperator

    def states(self, task: str) -> list[str | None]:
        return [t.state for t in self.tasks if t.task_id == f"{self.step}.{task}"]

    def task_log(self, task: str, map_index: int = -1) -> str:
        """The lines ``dags test`` printed while it ran that task instance."""
        start = f"[DAG TEST] starting task_id={self.step}.{task} map_index={map_index}"
        end = f"[DAG TEST] end task task_id={self.step}.{task} map_index={map_index}"
        parts = self.log.split(start)
        assert len(parts) > 1, f"{task}[{map_index}] did not run:\n{self.log[-3000:]}"
        return "".join(part.split(end)[0] for part in parts[1:])

    @property
    def output_dir(self) -> Path:
        return self.output_root / self.dag_id / self.step / safe_run_id(self.run_id)

    def output_lines(self, name: str = "parallel_run_step.txt") -> list[str]:
        return (self.output_dir / name).read_text().splitlines()

    def calls(self) -> list[tuple[int, int, int]]:
        """(mini-batch index, worker pid, node task pid) of every run() call."""
        path = self.output_dir / "calls.log"
        return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


class RestApi:
    """Airflow's REST API at ``url``: with ``token``, as the user it was issued to."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token

    @classmethod
    def login(cls, url: str, username: str, password: str) -> RestApi:
        request = urllib.request.Request(
            f"{url}/auth/token", method="POST",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return cls(url, json.loads(response.read())["access_token"])

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            f"{self.url}/api/v2/{path}", method=method, headers=headers,
            data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def trigger(self, dag_id: str, conf: dict) -> str:
        return self.api("POST", f"dags/{dag_id}/dagRuns",
                        {"logical_date": None, "conf": conf})["dag_run_id"]

    def wait(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        """The run's final state ("success" or "failed")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise AssertionError(f"run {run_id} of {dag_id} did not finish in {timeout} s")

    def task_instances(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        """The instances of ``task_id`` in the run, by map index."""
        found = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        return sorted((t for t in found["task_instances"] if t["task_id"] == task_id),
                      key=lambda t: t["map_index"])


def wait_for(what: str, check, timeout: float, logs: Path) -> None:
    """Until ``check()`` is true (an OSError counts as not yet); else fail with the tails of
    the ``*.log`` files in ``logs``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs.glob("*.log"))
    raise AssertionError(f"{what} not ready after {timeout} s\n{tails}")


class AirflowHome:
    """An AIRFLOW_HOME with its own SQLite database and DAGs folder."""

    def __init__(self, path: Path, dags_folder: Path, **config: str) -> None:
        self.path = path
        self.dags_folder = dags_folder
        self.config = config

    def env(self, **extra: str | None) -> dict[str, str]:
        """The environment of an airflow command; a None in ``extra`` removes that variable."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "AIRFLOW_HOME": str(self.path),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT": str(self.path / "parallel_run"),
        })
        env.update(self.config)
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def airflow(self, *args: str, timeout: float = 300,
                **env: str | None) -> subprocess.CompletedProcess:
        return subprocess.run([AIRFLOW, *args], env=self.env(**env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def airflow_while(self, args: list[str], during: Callable[[], None],
                      **env: str | None) -> str:
        """``airflow ARGS`` with ``during()`` called while it runs; what it printed."""
        with tempfile.TemporaryFile("w+") as out:
            process = subprocess.Popen([AIRFLOW, *args], env=self.env(**env), stdout=out,
                                       stderr=subprocess.STDOUT, text=True,
                                       stdin=subprocess.DEVNULL)
            try:
                during()
                process.wait(300)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            out.seek(0)
            return out.read()

    def migrate(self) -> None:
        done = self.airflow("db", "migrate")
        assert done.returncode == 0, done.stdout

    def dags_test(self, dag_id: str, data: Path, conf: dict | None = None,
                  output_root: Path | str | None = None, step: str = STEP,
                  extra: tuple[str, ...] = (), during: Callable[[], None] | None = None,
                  **env: str) -> DagRun:
        """``airflow dags test DAG [EXTRA...] [-c CONF]`` with PRT_DATA=data; the run's outcome.
        ``during``: called while the run goes on (to interrupt a task)."""
        output_root = output_root or data / "out"
        args = ["dags", "test", dag_id, *extra] + (["-c", json.dumps(conf)] if conf else [])
        env = {"PRT_DATA": str(data), "AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT": str(output_root),
               **env}
        log = (self.airflow(*args, **env).stdout if during is None
               else self.airflow_while(args, during, **env))
        found = re.findall(r"DagRun Finished: dag_id=[^,]+, .*?run_id=([^,]+),.*?state=(\w+)", log)
        if not found:  # refused before a run started: report the log as the state
            return DagRun(dag_id, "", "not started", log, output_root, step=step)
        run_id, state = found[-1]
        return DagRun(dag_id, run_id, state, log, output_root, self.task_runs(dag_id, run_id), step)

    def asset_events(self, run: DagRun) -> list[tuple[str, str, dict]]:
        """(task, asset URI, extra) of every Asset event the run emitted."""
        with sqlite3.connect(self.path / "airflow.db") as db:
            rows = db.execute(
                "select e.source_task_id, a.uri, e.extra from asset_event e "
                "join asset a on a.id = e.asset_id where e.source_dag_id = ? "
                "and e.source_run_id = ?", (run.dag_id, run.run_id)).fetchall()
        return [(task, uri, json.loads(extra)) for task, uri, extra in rows]

    def task_runs(self, dag_id: str, run_id: str) -> list[TaskRun]:
        with sqlite3.connect(self.path / "airflow.db") as db:
            rows = db.execute(
                "select task_id, map_index, state, rendered_map_index, try_number "
                "from task_instance where dag_id = ? and run_id = ? order by task_id, map_index",
                (dag_id, run_id)).fetchall()
        return [TaskRun(*row) for row in rows]


def make_files(folder: Path, texts: list[str]) -> list[str]:
    """``folder/f000.txt``... with the given texts; the output lines they should give."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = []
    for i, text in enumerate(texts):
        (folder / f"f{i:03d}.txt").write_text(text + "\n")
        expected.append(f"f{i:03d}.txt: {text}")
    return expected


EDITABLE_SCRIPT = '''
import os

def run(mini_batch):
    if {fails} and any(os.path.basename(p) == "f010.txt" for p in mini_batch):
        raise ValueError("f010 asks to fail")
    return [f"{{os.path.basename(p)}}: {version}" for p in mini_batch]
'''


def write_editable_script(data: Path, version: str, fails: bool = False) -> None:
    """``data/script/score.py`` (the prt_editable DAGs' entry script): each file's line says
    ``version``; with ``fails``, run() raises on f010.txt."""
    (data / "script").mkdir(exist_ok=True)
    (data / "script" / "score.py").write_text(EDITABLE_SCRIPT.format(version=version, fails=fails))
