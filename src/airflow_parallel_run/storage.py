"""The job's output location: where results, state and logs are kept.

Everything a job writes goes through :class:`OutputLocation`, so that "where" is decided in one
place. Writes that other steps rely on are atomic (write a temporary file, then rename): a crash
never leaves half of one behind.

Layout under the output folder (SPEC.md, "Outputs and logs", plus our own state)::

    parallel_run_step.txt
    logs/...                          see logs.py
    .parallel_run/job.json            fingerprint of the job, plan summary
    .parallel_run/plan/NNNNN.jsonl    mini-batch descriptors, PLAN_CHUNK per file
    .parallel_run/results/NNNNN/NNNNNNNNN.rec   one durable record per finished mini-batch
    .parallel_run/counts/node-K.json  live counts of node K, read by the others
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError

STATE_DIR = ".parallel_run"
PLAN_CHUNK = 1000


def local_path(url: str) -> str:
    """``file:///x`` -> ``/x``; a plain path stays as it is."""
    return url[len("file://"):] if url.startswith("file://") else url


class OutputLocation:
    """A local output folder (remote fsspec locations arrive with the tabular/remote issue)."""

    def __init__(self, url: str) -> None:
        if "://" in url and not url.startswith("file://"):
            raise InputError(
                f"output {url!r}: only local folders and file:// URLs are supported as output yet"
            )
        self.url = url
        self.root = Path(local_path(url)).absolute()

    # -- plain file operations (paths are relative to the root, with '/') ---------------------

    def path(self, rel: str) -> Path:
        return self.root / rel

    def makedirs(self, rel: str = "") -> Path:
        target = self.path(rel)
        target.mkdir(parents=True, exist_ok=True)
        return target

    def write_atomic(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(data)
        os.replace(tmp, target)

    def write_json(self, rel: str, data: Any) -> None:
        self.write_atomic(rel, json.dumps(data, indent=1, sort_keys=True).encode())

    def read_json(self, rel: str) -> Any | None:
        try:
            return json.loads(self.path(rel).read_bytes())
        except FileNotFoundError:
            return None

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def listdir(self, rel: str) -> list[str]:
        try:
            return os.listdir(self.path(rel))
        except FileNotFoundError:
            return []

    def remove(self, rel: str) -> None:
        target = self.path(rel)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.replace(self.path(src), self.path(dst))

    def append_text(self, rel: str, text: str) -> None:
        """One write() per call with O_APPEND: lines of concurrent writers do not interleave."""
        target = self.path(rel)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode("utf-8", "backslashreplace"))
        finally:
            os.close(fd)

    def iter_lines(self, rel: str) -> Iterator[str]:
        try:
            with open(self.path(rel), encoding="utf-8") as handle:
                yield from handle
        except FileNotFoundError:
            return


def describe_storage_error(url: str, exc: BaseException) -> str:
    """One line for a store that refused a request: the URL and what it said."""
    kind = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else kind
    if isinstance(exc, PermissionError):
        hint = "check the credentials (storage_options or the connection)"
    elif isinstance(exc, FileNotFoundError):
        hint = "check that the bucket or folder exists"
    else:
        hint = "check the URL and the credentials"
    return f"{url!r}: the store refused the request ({kind}: {text}); {hint}"
