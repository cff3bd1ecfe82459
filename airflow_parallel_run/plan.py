"""Planning: inputs -> mini-batch descriptors in the output location -> shards for the nodes.

The planner streams the inputs once. Mini-batches are written to plan chunks as they form, so
only one mini-batch is held at a time; a node later reads just the chunks of its shard. The
job's fingerprint (inputs' names, sizes and times, the script and its folder (source.py), the
arguments and the settings that change results) decides whether an earlier run in the same
output location is resumed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import ParallelRunConfig
from .errors import StateError
from .storage import PLAN_CHUNK, STATE_DIR, OutputLocation

PLAN_DIR = f"{STATE_DIR}/plan"
JOB_FILE = f"{STATE_DIR}/job.json"
# What the files in STATE_DIR look like, kept in JOB_FILE. 2: tries and errors are events
# (events.py); state without a number is older (1). A run resumes state of its own format only.
STATE_FORMAT = 2

# Settings that change what a finished mini-batch holds; the others (counts of nodes and
# processes, timeouts, thresholds, logging) may change between a run and its resumption.
RESULT_FIELDS = (
    "mini_batch_size",
    "output_action",
    "append_row_dataframe_header",
    "append_row_separator",
    "partition_keys",
    "environment_variables",
)


@dataclass(slots=True)
class MiniBatch:
    """A mini-batch descriptor: small enough to ship anywhere, read only by its worker.

    File input: ``items`` are the files. Tabular input: ``piece`` describes the rows (a
    TablePiece as a dict: a path with a byte range or row groups, or partition key values).
    """

    index: int
    dataset: str
    items: list[str]
    piece: dict[str, Any] | None = None

    def to_json(self) -> str:
        fields: list[Any] = [self.index, self.dataset, self.items]
        if self.piece is not None:
            fields.append(self.piece)
        return json.dumps(fields)

    @classmethod
    def from_json(cls, line: str) -> MiniBatch:
        return cls(*json.loads(line))

    @property
    def known_size(self) -> int | None:
        """Items in it, when known without reading data (rows of a CSV piece are not)."""
        if self.piece is None:
            return len(self.items)
        return self.piece.get("rows")


@dataclass
class PlanSummary:
    """What the planner found; kept in ``.parallel_run/job.json``."""

    fingerprint: str
    mini_batch_count: int
    item_count: int | None  # None when rows of a table are only known once read
    datasets: list[dict[str, Any]] = field(default_factory=list)
    planning_seconds: float = 0.0
    state_format: int = STATE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanSummary:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class JobPlan:
    """The planner's answer: small enough for an XCom; nodes and reducer start from it."""

    output: str
    mini_batch_count: int
    item_count: int | None  # None when rows of a table are only known once read
    node_count: int
    fingerprint: str
    resumed: bool
    started: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobPlan:
        return cls(**data)

    def shard(self, node_index: int) -> range:
        return shard_range(self.mini_batch_count, self.node_count, node_index)


def shard_range(mini_batch_count: int, node_count: int, node_index: int) -> range:
    """Node ``node_index``'s contiguous share; shares differ in size by at most one."""
    start = node_index * mini_batch_count // node_count
    end = (node_index + 1) * mini_batch_count // node_count
    return range(start, end)


def _chunk_rel(chunk: int, plan_dir: str = PLAN_DIR) -> str:
    return f"{plan_dir}/{chunk:05d}.jsonl"


class _ChunkWriter:
    """Streams mini-batch lines into plan chunks of PLAN_CHUNK lines, through a local file:
    a chunk of big mini-batches is never held in memory."""

    def __init__(self, location: OutputLocation, plan_dir: str) -> None:
        self.location = location
        self.plan_dir = plan_dir
        self.chunk = 0
        self.count = 0
        self.handle: Any = None
        location.makedirs(plan_dir)

    def add(self, batch: MiniBatch) -> str:
        line = batch.to_json()
        if self.handle is None:
            self.tmp = self.location.local_temp(_chunk_rel(self.chunk, self.plan_dir))
            self.handle = open(self.tmp, "w", encoding="utf-8")
        self.handle.write(line + "\n")
        self.count += 1
        if self.count == PLAN_CHUNK:
            self.flush()
        return line

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
            self.location.put_file(self.tmp, _chunk_rel(self.chunk, self.plan_dir))
            self.chunk += 1
            self.count = 0


def script_fingerprint(
    config: ParallelRunConfig, entry_script: str, source_hash: str, arguments: Sequence[str],
) -> str:
    """What, besides the inputs, decides a job's results. ``source_hash``: the script's folder
    (source.py's manifest_hash)."""
    hasher = hashlib.sha256()
    values = config.to_dict()  # JSON values as earlier versions wrote them: resume still matches
    settings = {name: values[name] for name in RESULT_FIELDS}
    settings["partition_keys"] = list(config.partition_keys or [])
    hasher.update(json.dumps({"settings": settings, "arguments": list(arguments)},
                             sort_keys=True, default=str).encode())
    with open(entry_script, "rb") as handle:
        hasher.update(hashlib.sha256(handle.read()).digest())
    hasher.update(source_hash.encode())
    return hasher.hexdigest()


def plan_job(
    inputs: Sequence[Any], config: ParallelRunConfig, location: OutputLocation, base_fingerprint: str,
    note: Callable[[str], None] = lambda text: None, stats: bool = True,
    on_batch: Callable[[MiniBatch], None] | None = None,
) -> PlanSummary:
    """List the inputs once, write the mini-batches into a new plan, and return its summary.

    The new plan is written beside the old one and swapped in by :func:`adopt_plan`.
    ``stats=False``: local files' sizes and times stay out of the fingerprint; the workers
    record them instead, and a resumed node checks them (see engine/node.py).
    ``on_batch`` hears of each mini-batch once it is written (a node may run it at once).
    """
    started = time.monotonic()
    hasher = hashlib.sha256(base_fingerprint.encode())
    plan_dir = f"{STATE_DIR}/plan.new-{os.getpid()}"
    location.remove(plan_dir)
    writer = _ChunkWriter(location, plan_dir)
    try:
        return _plan_into(inputs, config, location, hasher, plan_dir, writer, started, note,
                          stats, on_batch)
    except BaseException:
        location.remove(plan_dir)
        raise


def _hash_item(hasher: Any, item: Any) -> None:
    hasher.update(f"{item.path}\0{item.size}\0{item.mtime}\n".encode("utf-8", "surrogateescape"))


def _file_batches(dataset: Any, size: int, hasher: Any, stats: bool,
                  note: Callable[[str], None]) -> Iterator[tuple[list[str], None]]:
    """Mini-batches of paths; sizes and times (when listed) go into the fingerprint."""
    batch: list[str] = []
    for chunk in dataset.iter_chunks(stats=stats, note=note):
        if chunk and isinstance(chunk[0], str):  # listed without stats: paths only
            paths = chunk
        else:
            hasher.update(repr([(item.size, item.mtime) for item in chunk]).encode())
            paths = [item.path for item in chunk]
        start = 0
        while start < len(paths):
            take = paths[start:start + size - len(batch)]
            batch += take
            start += len(take)
            if len(batch) == size:
                yield batch, None
                batch = []
    if batch:
        yield batch, None


def _table_batches(dataset: Any, config: ParallelRunConfig, hasher: Any,
                   note: Callable[[str], None]) -> Iterator[tuple[list[str], dict[str, Any]]]:
    for item in dataset.iter_items():
        _hash_item(hasher, item)
    if config.partition_keys:
        pieces = dataset.iter_partition_pieces(config.partition_keys, note=note)
    else:
        pieces = dataset.iter_pieces(config.bytes_per_mini_batch(), note=note)
    for piece in pieces:
        yield [], piece.to_dict()


def _plan_into(inputs: Sequence[Any], config: ParallelRunConfig, location: OutputLocation,
               hasher: Any, plan_dir: str, writer: _ChunkWriter, started: float,
               note: Callable[[str], None], stats: bool,
               on_batch: Callable[[MiniBatch], None] | None) -> PlanSummary:
    index = 0
    items: int | None = 0
    datasets = []
    for dataset in inputs:
        hasher.update(json.dumps(dataset.to_dict(), sort_keys=True).encode())
        first = index
        batches: Iterator[tuple[list[str], dict[str, Any] | None]]
        if dataset.kind == "tabular":
            batches = _table_batches(dataset, config, hasher, note)
        else:
            batches = _file_batches(dataset, config.files_per_mini_batch(), hasher, stats, note)
        for paths, piece in batches:
            batch = MiniBatch(index, dataset.name, paths, piece)
            hasher.update(writer.add(batch).encode("utf-8", "surrogateescape"))
            if on_batch is not None:
                on_batch(batch)
            index += 1
            size = batch.known_size
            items = None if items is None or size is None else items + size
        datasets.append({"name": dataset.name, "kind": dataset.kind, "paths": dataset.paths,
                         "first_mini_batch": first, "mini_batches": index - first})
    writer.flush()
    summary = PlanSummary(hasher.hexdigest(), index, items, datasets, time.monotonic() - started)
    location.write_json(f"{plan_dir}/summary.json", summary.to_dict())
    return summary


def adopt_plan(location: OutputLocation, summary: PlanSummary) -> bool:
    """Make the new plan the job's. Returns True when an earlier run of the same job resumes.

    An earlier run of a different job (other inputs, script, arguments or settings) in the same
    output location is cleared away: its results must not mix with ours.
    """
    new_dir = f"{STATE_DIR}/plan.new-{os.getpid()}"
    previous = location.read_json(JOB_FILE)
    resumes = previous is not None and previous.get("fingerprint") == summary.fingerprint
    refusal = state_format_error(location, previous) if resumes else None
    if refusal is not None:
        location.remove(new_dir)
        raise refusal
    if previous is not None and not resumes:
        for rel in (STATE_DIR + "/results", STATE_DIR + "/counts", STATE_DIR + "/events", "logs"):
            location.remove(rel)
    location.remove(PLAN_DIR)
    location.rename(new_dir, PLAN_DIR)
    location.write_json(JOB_FILE, summary.to_dict())
    return resumes


def state_format_error(location: OutputLocation, job: dict[str, Any] | None) -> StateError | None:
    """Why the state described by ``job`` (JOB_FILE's contents) cannot be carried on."""
    found = 1 if job is None else job.get("state_format", 1)
    if job is None or found >= STATE_FORMAT:
        return None
    return StateError(f"this output holds state of an older airflow-parallel-run (format "
                      f"{found}); delete {location.display(STATE_DIR)} to start again")


def iter_plan(location: OutputLocation, indices: range) -> Iterator[MiniBatch]:
    """The mini-batches of ``indices``, read chunk by chunk. Line k of chunk c is mini-batch
    c * PLAN_CHUNK + k: only the lines of ``indices`` are parsed (a node sharing work reads
    a few mini-batches of a chunk at a time, many times over)."""
    if not indices:
        return
    for chunk in range(indices.start // PLAN_CHUNK, (indices.stop - 1) // PLAN_CHUNK + 1):
        first = chunk * PLAN_CHUNK
        lines = location.iter_lines(_chunk_rel(chunk))
        for line in itertools.islice(lines, max(0, indices.start - first), indices.stop - first):
            batch = MiniBatch.from_json(line)
            if batch.index in indices:
                yield batch
