"""The messages that cross between a node (the supervisor) and its worker processes.

Each is a small pickled dataclass sent over a socket pair (multiprocessing.connection).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

# -- node -> worker ---------------------------------------------------------------------------

@dataclass(slots=True)
class RunMiniBatch:
    index: int
    dataset: str
    items: list[str]  # local file paths
    try_number: int
    piece: dict[str, Any] | None = None  # a table's rows to read (inputs.tabular.TablePiece)
    versions: bool = False  # record when run() started: its local input files are checked on resume


@dataclass(slots=True)
class Stop:
    """No more work: call shutdown() and exit."""


# -- worker -> node ---------------------------------------------------------------------------

@dataclass(slots=True)
class Ready:
    """init() returned; the worker waits for mini-batches."""

    pid: int


@dataclass(slots=True)
class InitFailed:
    pid: int
    error: str  # one line; the traceback is in logs/user/error/...


@dataclass(slots=True)
class MiniBatchDone:
    """run() returned and the mini-batch's record is stored."""

    index: int
    total: int
    succeeded: int
    failed: int
    run_seconds: float
    warning: str | None = None
    written: tuple[str, int, int] | None = None  # the record: (log, offset, length) of its entry


@dataclass(slots=True)
class MiniBatchFailed:
    """This try failed (run() raised, or returned something unusable)."""

    index: int
    error: str
    run_seconds: float
    retryable: bool = True  # False: the input itself is bad, another try cannot help
    total: int | None = None  # items of the mini-batch when the worker could tell


@dataclass(slots=True)
class Stopped:
    """shutdown() is done; the worker exits."""


# -- what a worker is told when it starts -------------------------------------------------

@dataclass
class WorkerSpec:
    """Everything a worker process needs, written as JSON by the node before it starts one."""

    entry_script: str
    working_dir: str
    arguments: list[str]
    output_root: str
    output_action: str
    append_row_separator: str
    append_row_dataframe_header: bool
    logging_level: str
    ip: str
    node_index: int
    side_inputs: dict[str, str] = field(default_factory=dict)
    # name -> {"options": ..., "storage_options": ...} of each tabular input
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # masked in every log
    # pyarrow's thread pool size when reading tables; 0 leaves pyarrow's default
    arrow_threads: int = 0
    memory_limit: int | None = None  # MB of address space (worker_memory_limit)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))
