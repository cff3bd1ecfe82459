"""The example DAGs in dags/ run on a fresh machine with no external service."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from airflow_runs import REPO_DAGS, AirflowHome


@pytest.fixture(scope="module")
def examples_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    # dags/ copied alone: the DAGs find their scripts and data beside them, not in the checkout
    dags = tmp_path_factory.mktemp("copied") / "dags"
    shutil.copytree(REPO_DAGS, dags)
    home = AirflowHome(tmp_path_factory.mktemp("examples-home"), dags)
    home.migrate()
    return home


def test_digit_identification_identifies_the_digits(examples_home: AirflowHome, tmp_path: Path):
    run = examples_home.dags_test("digit_identification", tmp_path,
                                  conf={"mini_batch_size": 100, "node_count": 2},
                                  DIGITS_DATA=str(tmp_path / "digits"), step="identify")

    assert run.state == "success"
    assert run.states("node") == ["success", "success"]
    lines = run.output_lines("digits.txt")
    with open(tmp_path / "digits" / "labels" / "labels.csv", newline="") as handle:
        truth = {r["file"]: r["label"] for r in csv.DictReader(handle) if r["split"] == "test"}
    assert [line.split(": ")[0] for line in lines] == sorted(truth)  # each image once, in order
    right = sum(truth[name] == digit for name, digit in (line.split(": ") for line in lines))
    assert right / len(lines) > 0.9
    entry_script_logs = (run.output_dir / "logs" / "user" / "entry_script_log").rglob("*.txt")
    assert "fitted 3-nearest-neighbours" in "".join(p.read_text() for p in entry_script_logs)


def test_tabular_scoring_writes_one_scored_row_per_application(
        examples_home: AirflowHome, tmp_path: Path):
    run = examples_home.dags_test("tabular_scoring", tmp_path, conf={"mini_batch_size": "256KB"},
                                  TABULAR_DATA=str(tmp_path / "applications"), step="score")

    assert run.state == "success"
    lines = run.output_lines("scores.csv")
    assert lines[0] == "id,score,decision"
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(100000, 120000))
    # the rows of a CSV are counted as they are read: planned, once every mini-batch was
    assert "items: 20000 planned, 20000 succeeded, 0 failed" in run.task_log("reducer")


def test_every_example_step_retries_its_node_tasks(examples_home: AirflowHome):
    """So that what a user of the examples sees after a lost node is a resume."""
    code = ("import json, sys\n"
            "from airflow.dag_processing.dagbag import DagBag\n"
            "bag = DagBag(dag_folder=sys.argv[1])\n"
            "assert not bag.import_errors, bag.import_errors\n"
            "print(json.dumps({t.dag_id + '/' + t.task_id: t.retries for d in bag.dags.values()\n"
            "                  for t in d.tasks if t.task_id.endswith('.node')}))")
    done = subprocess.run([sys.executable, "-c", code, str(examples_home.dags_folder)],
                          env=examples_home.env(), capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-3000:]
    retries = json.loads(done.stdout.splitlines()[-1])
    assert sorted(retries) == ["digit_identification/identify.node", "tabular_scoring/score.node"]
    assert all(n >= 1 for n in retries.values()), retries
