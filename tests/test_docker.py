"""docker/: the files users run a cluster with. No image can be built here, so what can be
checked is checked: the compose file, its one shared environment, and that Airflow knows
every setting of that environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler",
                    "airflow-dag-processor", "airflow-worker"}


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _env() -> dict[str, str]:
    lines = (DOCKER / "airflow.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_has_the_cluster_services():
    services = _compose()["services"]

    assert set(services) == AIRFLOW_SERVICES | {"postgres", "redis", "minio"}
    assert services["postgres"]["image"] == "postgres:15"
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor",
                        "airflow-worker": "celery worker"}


def test_every_airflow_service_reads_the_one_environment_file():
    services = _compose()["services"]

    for name in AIRFLOW_SERVICES:
        assert services[name]["env_file"] == "airflow.env", name
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile", name
        assert "../dags:/opt/airflow/dags:ro" in services[name]["volumes"], name
    for name in ("postgres", "redis", "minio"):
        assert "env_file" not in services[name]


def test_the_environment_is_a_celery_cluster_with_its_output_on_s3():
    env = _env()

    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT"].startswith("s3://")
    conn_id = env["AIRFLOW__PARALLEL_RUN__OUTPUT_CONN_ID"]
    connection = json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
    assert connection["conn_type"] == "aws"
    assert connection["extra"]["client_kwargs"]["endpoint_url"] == "http://minio:9000"


def test_airflow_knows_every_setting_of_the_environment(tmp_path: Path):
    settings = [key for key in _env() if key.startswith("AIRFLOW__")]
    code = ("import sys\nfrom airflow.configuration import conf\n"
            "known = {(s, o) for s, d in conf.configuration_description.items()"
            " for o in d.get('options', {})}\n"
            "unknown = [k for k in sys.argv[1:]"
            " if tuple(k[len('AIRFLOW__'):].lower().split('__', 1)) not in known]\n"
            "print(' '.join(unknown))\n")
    checked = subprocess.run([sys.executable, "-c", code, *settings], capture_output=True,
                             text=True, timeout=120,
                             env={"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})

    assert checked.returncode == 0, checked.stderr[-2000:]
    assert checked.stdout.split() == []


def test_the_image_is_the_official_one_with_the_package_and_its_s3_extra():
    dockerfile = (DOCKER / "Dockerfile").read_text()

    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile.splitlines()
    assert '"/opt/airflow-parallel-run[s3]"' in dockerfile
    assert "apache-airflow-providers-celery" in dockerfile
