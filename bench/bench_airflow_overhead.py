"""Benchmark: the fixed overhead of Airflow around the engine.

The tiny-files job (10,000 files of a few bytes, mini_batch_size 10: 1,000 mini-batches,
run() reads each file) three ways, timed as whole commands, alternately, 3 times each:

- ``parallel-run``, 1 node x 2 processes
- ``airflow dags test``, ParallelRunOperator with node_count 1 x 2 processes
- ``airflow dags test``, node_count 4 x 2 processes
- ``airflow dags test`` of a DAG with one task that does nothing: Airflow's own start-up

The headline number is the second minus the first: what Airflow adds (interpreter and
Airflow start-up, DAG parsing, the in-process API server, the metadata database, and the
planner / node / reducer tasks) to the same work on the same workers. ``dags test`` runs
mapped instances one after another, so the node_count 4 run shows the cost of more task
instances, not a speed-up. Every run's task instances are counted in the metadata database:
node_count + 2 of them, however many mini-batches there are.

    .venv/bin/python bench/bench_airflow_overhead.py

Airflow runs in ``BENCH_DATA/airflow-home`` (SQLite); the DAG file is written there too.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchlib import (
    DATA,
    SCRIPTS,
    Contender,
    Result,
    alternate,
    engine_command,
    file_set,
    fresh_dir,
    median,
    report,
    warm,
)

FILES = 10_000
MINI_BATCH_SIZE = 10
PROCESSES = 2
NODE_COUNTS = (1, 4)
REPEATS = 3
DAG_ID = "bench_tiny_files"
EMPTY_ID = "bench_one_empty_task"
HOME = DATA / "airflow-home"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))

DAG_FILE = '''
from airflow.sdk import DAG, Param, task
from airflow_parallel_run import FileDataset
from airflow_parallel_run.airflow import ConfigTemplate, ParallelRunOperator

with DAG({empty_id!r}, schedule=None):

    @task
    def nothing():
        pass

    nothing()

with DAG({dag_id!r}, schedule=None, params={{"node_count": Param(1, type="integer")}}):
    ParallelRunOperator(
        task_id="step",
        parallel_run_config=ConfigTemplate(
            entry_script={script!r}, mini_batch_size={mini_batch_size},
            node_count="{{{{ params.node_count }}}}", process_count_per_node={processes}),
        inputs=FileDataset.from_files({folder!r}),
        allow_reuse=False,  # every round computes
    )
'''


def airflow_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(HOME), "AIRFLOW__CORE__DAGS_FOLDER": str(HOME / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT": str(DATA / "out" / "airflow")})
    return env


def setup_airflow(folder: Path) -> None:
    (HOME / "dags").mkdir(parents=True, exist_ok=True)
    (HOME / "dags" / f"{DAG_ID}.py").write_text(DAG_FILE.format(
        dag_id=DAG_ID, empty_id=EMPTY_ID, script=str(SCRIPTS / "read_lines.py"),
        mini_batch_size=MINI_BATCH_SIZE, processes=PROCESSES, folder=str(folder)))
    subprocess.run([AIRFLOW, "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dags_test(node_count: int) -> list[str]:
    return [AIRFLOW, "dags", "test", DAG_ID, "-c", f'{{"node_count": {node_count}}}']


EMPTY_DAG_TEST = [AIRFLOW, "dags", "test", EMPTY_ID]


def runs_in_database() -> list[tuple[str, str, int]]:
    """(run_id, state, task instances) of every run of the benchmark DAG."""
    with sqlite3.connect(HOME / "airflow.db") as db:
        runs = db.execute("select run_id, state from dag_run where dag_id = ?",
                          (DAG_ID,)).fetchall()
        counts = Counter(row[0] for row in db.execute(
            "select run_id from task_instance where dag_id = ?", (DAG_ID,)))
    return [(run_id, state, counts[run_id]) for run_id, state in runs]


def main() -> Result:
    print(f"bench_airflow_overhead: {FILES:,} tiny files, mini_batch_size {MINI_BATCH_SIZE} "
          f"({FILES // MINI_BATCH_SIZE:,} mini-batches), {PROCESSES} processes per node, "
          f"{REPEATS} alternating rounds")
    folder = file_set("tiny-10k", FILES, lambda i: f"value {i}".encode())
    warm(folder)
    os.environ.clear()
    os.environ.update(airflow_env())  # for the timed commands, which inherit it
    setup_airflow(folder)
    before = {run_id for run_id, _, _ in runs_in_database()}
    engine_out = fresh_dir("airflow-bench-engine")
    contenders = [Contender("parallel-run", lambda: fresh_dir("airflow-bench-engine"),
                            engine_command("read_lines.py", folder, engine_out, MINI_BATCH_SIZE,
                                           PROCESSES))]
    contenders += [Contender(f"airflow dags test, {n} node(s)", lambda: None, dags_test(n))
                   for n in NODE_COUNTS]
    contenders.append(Contender("airflow dags test, empty task", lambda: None, EMPTY_DAG_TEST))
    times = alternate(contenders, REPEATS)
    engine, *airflow, empty = (median(times[c.name]) for c in contenders)

    runs = [r for r in runs_in_database() if r[0] not in before]
    failed = [r for r in runs if r[1] != "success"]
    instances = sorted({count for _, _, count in runs})
    expected = sorted({n + 2 for n in NODE_COUNTS})
    overhead = airflow[0] - engine
    per_instance = (airflow[1] - airflow[0]) / (NODE_COUNTS[1] - NODE_COUNTS[0])
    notes = (f"parallel-run {engine:.2f} s; airflow dags test {airflow[0]:.2f} s with "
             f"{NODE_COUNTS[0]} node, {airflow[1]:.2f} s with {NODE_COUNTS[1]} nodes (run one "
             f"after another by dags test)\nAirflow's fixed overhead: {overhead:.2f} s, of which "
             f"{empty:.2f} s is `airflow dags test` of a DAG with one empty task; each extra "
             f"node task instance: {per_instance:.2f} s\n{len(runs)} DAG runs, "
             f"{len(failed)} not successful; task instances per run: {instances} "
             f"(node_count + 2 = {expected}) for {FILES // MINI_BATCH_SIZE:,} mini-batches")
    return Result(f"Airflow overhead ({FILES // 1000}k files, "
                  f"{FILES // MINI_BATCH_SIZE:,} mini-batches)",
                  f"{airflow[0]:.2f} s", f"{engine:.2f} s", f"+{overhead:.2f} s fixed",
                  "task instances = node_count + 2", instances == expected and not failed, notes)


if __name__ == "__main__":
    report(main())
