"""`make demo`: the digit_identification DAG run by `airflow dags test` in ./airflow-home.

Airflow's metadata database is SQLite in ./airflow-home (git-ignored); the DAGs come from
./dags. At the end it prints where the output is, its first lines and the accuracy of the
identified digits against the labels.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOME = ROOT / "airflow-home"
DAG_ID, STEP = "digit_identification", "identify"
AIRFLOW = str(pathlib.Path(sys.executable).with_name("airflow"))


def airflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT": str(HOME / "parallel_run"),
        "DIGITS_DATA": str(HOME / "data" / "digits"),
    })
    return env


def run(command: list[str], log: pathlib.Path) -> tuple[int, str]:
    print("$", " ".join(pathlib.Path(command[0]).name if i == 0 else c
                        for i, c in enumerate(command)), flush=True)
    with open(log, "w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, env=airflow_env(),
                               cwd=ROOT, stdin=subprocess.DEVNULL)
    return code, log.read_text(errors="replace")


def reducer_result(run_id: str) -> dict | None:
    with sqlite3.connect(HOME / "airflow.db") as db:
        row = db.execute("select value from xcom where dag_id = ? and run_id = ? and task_id = ? "
                         "and key = 'return_value'", (DAG_ID, run_id, f"{STEP}.reducer")).fetchone()
    return json.loads(row[0]) if row else None


def accuracy(output_file: str) -> tuple[int, int]:
    with open(HOME / "data" / "digits" / "labels" / "labels.csv", newline="") as handle:
        truth = {row["file"]: row["label"] for row in csv.DictReader(handle)}
    right = total = 0
    with open(output_file) as handle:
        for line in handle:
            name, _, digit = line.strip().partition(": ")
            total += 1
            right += truth.get(name) == digit
    return right, total


def main() -> int:
    (HOME / "demo-logs").mkdir(parents=True, exist_ok=True)
    code, text = run([AIRFLOW, "db", "migrate"], HOME / "demo-logs" / "db-migrate.log")
    if code:
        print(text[-3000:])
        return code
    started = time.monotonic()
    log = HOME / "demo-logs" / "dags-test.log"
    code, text = run([AIRFLOW, "dags", "test", DAG_ID], log)
    finished = re.search(r"DagRun Finished: .*?run_id=([^,]+),.*?state=(\w+)", text)
    if finished is None:
        print(text[-3000:])
        print(f"\nthe run did not finish; the whole log: {log}")
        return code or 1
    run_id, state = finished.groups()
    print(f"\nDAG run {run_id}: {state} in {time.monotonic() - started:.0f} s (log: {log})")
    result = reducer_result(run_id)
    if state != "success" or not result:
        print(f"see {log}")
        return 1
    output_file = result["output_file"]
    print(f"output: {output_file}")
    print(f"logs:   {result['output_dir']}/logs")
    for note in result.get("notes", []):
        print(f"note:   {note}")
    print("first lines:")
    with open(output_file) as handle:
        for _, line in zip(range(5), handle, strict=False):
            print("   ", line.rstrip())
    right, total = accuracy(output_file)
    print(f"accuracy against the labels: {right}/{total} = {100.0 * right / total:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
