"""Durable per-mini-batch results: one record file per finished mini-batch.

A record is one JSON header line followed by the output lines of the mini-batch, written
atomically. A mini-batch counts as done only once its record exists, so a node that is
killed and started again runs exactly the mini-batches without a record (or with a failed one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .storage import PLAN_CHUNK, STATE_DIR, LocalLocation, OutputLocation, copy_rest, write_all

RESULTS_DIR = f"{STATE_DIR}/results"
OK = "ok"
FAILED = "failed"


@dataclass(slots=True)
class MiniBatchRecord:
    """The outcome of one mini-batch: ``ok`` (run() returned) or ``failed`` (every try failed)."""

    index: int
    status: str
    total: int
    succeeded: int
    failed: int
    tries: int
    header: str | None = None  # a DataFrame result's header line, written once in the output
    # when the mini-batch finished, for local input files: one changed later (mtime or ctime
    # after this) makes a resumed run run it again
    finished_at: float | None = None

    def encode(self, payload: bytes = b"") -> bytes:
        head = {"index": self.index, "status": self.status, "total": self.total,
                "succeeded": self.succeeded, "failed": self.failed, "tries": self.tries}
        if self.header is not None:
            head["header"] = self.header
        if self.finished_at is not None:
            head["finished_at"] = self.finished_at
        return json.dumps(head).encode() + b"\n" + payload

    @classmethod
    def decode(cls, data: bytes) -> tuple[MiniBatchRecord, bytes]:
        head, _, payload = data.partition(b"\n")
        return cls(**json.loads(head)), payload

    @property
    def failed_mini_batch(self) -> bool:
        return self.status == FAILED


def record_rel(index: int) -> str:
    return f"{RESULTS_DIR}/{index // PLAN_CHUNK:05d}/{index:09d}.rec"


def write_record(location: OutputLocation, record: MiniBatchRecord, payload: bytes = b"") -> None:
    location.write_atomic(record_rel(record.index), record.encode(payload))


def read_record(location: OutputLocation, index: int) -> tuple[MiniBatchRecord, bytes] | None:
    data = location.read_bytes(record_rel(index))
    return None if data is None else MiniBatchRecord.decode(data)


def append_payload(location: OutputLocation, index: int, out: int,
                   with_header: bool = False) -> MiniBatchRecord | None:
    """The record of mini-batch ``index``, with its output lines appended to the file
    descriptor ``out`` (after its DataFrame header line when ``with_header``); None when it
    has no record. A local record's lines are copied by the kernel, not through memory."""
    if not isinstance(location, LocalLocation):
        found = read_record(location, index)
        if found is None:
            return None
        record, payload = found
        _write_header(record, out, with_header)
        write_all(out, payload)
        return record
    try:
        handle = open(location.path(record_rel(index)), "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with handle:
        record = MiniBatchRecord(**json.loads(handle.readline()))
        _write_header(record, out, with_header)
        copy_rest(handle, out)
    return record


def _write_header(record: MiniBatchRecord, out: int, wanted: bool) -> None:
    if wanted and record.header is not None:
        write_all(out, record.header.encode("utf-8") + b"\n")


def read_records(location: OutputLocation, indices: range) -> dict[int, MiniBatchRecord]:
    """The records that exist among ``indices`` (headers only)."""
    found: dict[int, MiniBatchRecord] = {}
    if not indices:
        return found
    for chunk in range(indices.start // PLAN_CHUNK, (indices.stop - 1) // PLAN_CHUNK + 1):
        folder = f"{RESULTS_DIR}/{chunk:05d}"
        for name in location.listdir(folder):
            if not name.endswith(".rec") or name.startswith("."):
                continue
            index = int(name[:-4])
            if index in indices:
                data = location.read_bytes(f"{folder}/{name}")
                if data is not None:
                    found[index] = MiniBatchRecord.decode(data)[0]
    return found
