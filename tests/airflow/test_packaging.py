"""The Airflow layer is a provider, and the rest of the package runs without Airflow."""

from __future__ import annotations

import subprocess
import sys

from airflow_runs import AirflowHome


def test_airflow_providers_list_shows_the_package(airflow_home: AirflowHome):
    listed = airflow_home.airflow("providers", "list")

    assert listed.returncode == 0, listed.stdout
    line = next(line for line in listed.stdout.splitlines() if "airflow-parallel-run" in line)
    assert "ParallelRunStep" in line


def test_provider_config_puts_the_default_output_root_inside_airflow_home(
        airflow_home: AirflowHome):
    shown = airflow_home.airflow("config", "get-value", "parallel_run", "output_root",
                                 AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT=None)

    assert shown.returncode == 0, shown.stdout
    assert shown.stdout.strip() == f"{airflow_home.path}/parallel_run"


def test_package_and_command_line_do_not_import_airflow():
    code = ("import sys, airflow_parallel_run, airflow_parallel_run.cli, "
            "airflow_parallel_run.engine.job\n"
            "airflow_parallel_run.cli.build_parser()\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'airflow')\n"
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
