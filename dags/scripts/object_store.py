"""The example data on object storage: made on local disk as on one machine, then copied once
to a URL such as ``s3://conn_id@bucket/prefix`` (ObjectStoragePath's spelling: the connection
holds the credentials, read as the step reads it), so that node tasks on other machines read
the same files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import fsspec

from airflow_parallel_run.airflow.connections import scheme_of, split_conn, storage_options


def publish(make: Callable[[str], str], url: str, marker: str) -> str:
    """``make(folder)`` in a temporary folder, its files copied under ``url``; nothing to do
    when ``url/marker`` is there. The marker is copied last: a half-finished copy is redone."""
    plain, conn_id = split_conn(url)
    options = storage_options(conn_id, scheme_of(plain)) if conn_id else {}
    fs, root = fsspec.core.url_to_fs(plain, **options)
    if fs.exists(f"{root}/{marker}"):
        return url
    with tempfile.TemporaryDirectory() as scratch:
        local = make(os.path.join(scratch, "data"))
        names = sorted(os.path.relpath(os.path.join(folder, name), local)
                       for folder, _, files in os.walk(local) for name in files)
        names.remove(marker)
        for batch in (names, [marker]):
            fs.put([os.path.join(local, name) for name in batch],
                   [f"{root}/{name}" for name in batch])
    return url
