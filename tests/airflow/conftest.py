"""Fixtures of the Airflow tests: a migrated SQLite metadata database per test module."""

from __future__ import annotations

import pytest
from airflow_runs import TEST_DAGS, AirflowHome


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    home = AirflowHome(tmp_path_factory.mktemp("airflow-home"), TEST_DAGS)
    home.migrate()
    return home
