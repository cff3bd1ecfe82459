"""The example DAGs in dags/ run on a fresh machine with no external service."""

from __future__ import annotations

import csv
import shutil
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
