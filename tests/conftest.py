"""Fixtures of the engine tests (helpers are in support.py)."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest
from support import Runner, start_azurite, start_fake_gcs, start_moto

# gcsfs would first ask each bucket over gRPC whether it is zonal, which fake-gcs-server does
# not answer (each ask waits 60 s): off before gcsfs is imported, here and in the processes
# the tests start.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


BUCKET = "prs-test"


@pytest.fixture(scope="module")
def s3_server():
    """moto's standalone S3 server in its own process, on a loopback port."""
    server, port = start_moto()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    yield endpoint, env
    server.terminate()
    server.wait()


@pytest.fixture
def s3(s3_server, tmp_path):
    endpoint, env = s3_server
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    prefix = f"{BUCKET}/{tmp_path.name}"
    if not fs.exists(BUCKET):
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    return fs, options, prefix, env


@pytest.fixture(scope="module")
def azurite_server(tmp_path_factory):
    """Azurite's blob service in its own process, on a loopback port: its connection string."""
    server, connection = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield connection
    server.kill()  # on SIGTERM it waits for its clients' idle connections, for minutes
    server.wait()


@pytest.fixture
def azure(azurite_server, tmp_path):
    """A container on Azurite: (filesystem, storage options, prefix for this test)."""
    options = {"connection_string": azurite_server}
    fs = fsspec.filesystem("abfs", skip_instance_cache=True, **options)
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return fs, options, f"{BUCKET}/{tmp_path.name}"


@pytest.fixture(scope="session")
def gcs_server():
    """fake-gcs-server in its own process, on a loopback port: its endpoint URL."""
    server, endpoint = start_fake_gcs()
    yield endpoint
    server.terminate()
    server.wait()


@pytest.fixture
def gcs(gcs_server, tmp_path):
    """A bucket on fake-gcs-server: (filesystem, storage options, prefix for this test)."""
    options = {"endpoint_url": gcs_server, "token": "anon", "project": "test"}
    fs = fsspec.filesystem("gs", skip_instance_cache=True, **options)
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return fs, options, f"{BUCKET}/{tmp_path.name}"
