"""Storage credentials from Airflow connections (``conn_id=``), never written anywhere.

An S3 server (moto) on loopback; the connection's extras hold the keys and the endpoint, so
the step can only reach the bucket through the connection.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import boto3
import fsspec
import pytest
from airflow_runs import AirflowHome
from support import start_moto

KEY, SECRET = "AKIAPRTTESTKEY0001", "prt-secret-Zq81xW0v"
BUCKET = "prt-airflow"


@pytest.fixture(scope="module")
def s3_endpoint():
    server, port = start_moto()
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait()


def test_connection_extras_reach_inputs_side_inputs_and_output_and_stay_secret(
        airflow_home: AirflowHome, s3_endpoint: str, tmp_path: Path):
    options = {"key": KEY, "secret": SECRET,
               "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=KEY,
                 aws_secret_access_key=SECRET, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    for i in range(7):
        fs.pipe(f"{BUCKET}/input/f{i}.txt", f"ok {i}\n".encode())
    fs.pipe(f"{BUCKET}/side/labels.txt", b"labels\n")
    connection = json.dumps({"conn_type": "aws", "extra": {"storage_options": options}})

    run = airflow_home.dags_test("prt_s3", tmp_path, conf={"mini_batch_size": 2},
                                 PRT_S3=f"s3://{BUCKET}", AIRFLOW_CONN_PRT_S3=connection)

    assert run.state == "success"
    assert fs.cat(f"{BUCKET}/output/parallel_run_step.txt").decode().splitlines() == [
        f"f{i}.txt: ok {i}" for i in range(7)]
    assert SECRET not in run.log and KEY not in run.log
    with sqlite3.connect(airflow_home.path / "airflow.db") as db:
        for table in ("xcom", "serialized_dag", "rendered_task_instance_fields"):
            stored = json.dumps(db.execute(f"select * from {table}").fetchall(), default=str)
            assert SECRET not in stored, table
    logs = fs.find(f"{BUCKET}/output/logs")
    assert logs and not any(SECRET.encode() in fs.cat(path) for path in logs)


def test_configured_output_connection_reaches_an_s3_output_root(
        airflow_home: AirflowHome, s3_endpoint: str, tmp_path: Path):
    """A cluster sets [parallel_run] output_root to s3:// and output_conn_id once, in its
    environment; a DAG then names no output and no output connection."""
    options = {"key": KEY, "secret": SECRET,
               "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    bucket = "prt-default-output"
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=KEY,
                 aws_secret_access_key=SECRET, region_name="us-east-1").create_bucket(Bucket=bucket)
    for i in range(3):
        fs.pipe(f"{bucket}/input/f{i}.txt", f"ok {i}\n".encode())
    connection = json.dumps({"conn_type": "aws", "extra": options})

    run = airflow_home.dags_test("prt_s3_default_output", tmp_path, PRT_S3=f"s3://{bucket}",
                                 AIRFLOW_CONN_PRT_S3=connection,
                                 output_root=f"s3://{bucket}/outputs",
                                 AIRFLOW__PARALLEL_RUN__OUTPUT_CONN_ID="prt_s3")

    assert run.state == "success", run.log[-3000:]
    (output,) = fs.glob(f"{bucket}/outputs/prt_s3_default_output/step/*/parallel_run_step.txt")
    assert fs.cat(output).decode().splitlines() == [f"f{i}.txt: ok {i}" for i in range(3)]
    assert SECRET not in run.log


def test_a_standard_aws_connection_works_through_object_storage_paths(
        airflow_home: AirflowHome, s3_endpoint: str, tmp_path: Path):
    """login/password and endpoint_url/region_name extras, as the Amazon provider defines them."""
    options = {"key": KEY, "secret": SECRET,
               "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    bucket = "prt-object-storage-path"
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=KEY,
                 aws_secret_access_key=SECRET, region_name="us-east-1").create_bucket(Bucket=bucket)
    for i in range(3):
        fs.pipe(f"{bucket}/input/f{i}.txt", f"ok {i}\n".encode())
    fs.pipe(f"{bucket}/side/l.txt", b"labels\n")
    connection = json.dumps({"conn_type": "aws", "login": KEY, "password": SECRET, "extra": {
        "endpoint_url": s3_endpoint, "region_name": "us-east-1"}})

    run = airflow_home.dags_test("prt_s3_object_storage_path", tmp_path, PRT_BUCKET=bucket,
                                 AIRFLOW_CONN_PRT_AWS=connection)

    assert run.state == "success", run.log[-3000:]
    assert fs.cat(f"{bucket}/output/parallel_run_step.txt").decode().splitlines() == [
        f"f{i}.txt: ok {i}" for i in range(3)]
    assert SECRET not in run.log
