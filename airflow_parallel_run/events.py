"""Typed events between stages: what the node and the workers tell the reducer, as records.

Every try of a mini-batch and every error becomes one JSON line (with a schema version,
``"v"``) in the event log of its process. The lines for people are rendered from the same
event when it is written; the reducer reads only the event logs::

    node: a TryEvent per try, an ErrorEvent per failure     --append--+
    worker: an ErrorEvent (with its traceback) per exception --append--+
                                                                       v
          .parallel_run/events/<ip>/<process>.jsonl --read_events--> reducer --> processed_mini_batches.csv,
                                                                                 error.txt, job_report.html
    and at once, rendered for people only:
          logs/sys/node/<ip>/<process>.txt (TryEvent.sys_line), logs/user/error/... (ErrorEvent.block)

Each line is one write() with O_APPEND, so the node and its worker share a log without
interleaving. A line torn by a crash, or of another version, is left out with a note.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import logs
from .storage import STATE_DIR, LocalLocation, OutputLocation

EVENTS_DIR = f"{STATE_DIR}/events"
VERSION = 1


def event_log(ip: str, process: str) -> str:
    """The event log of one worker process (its node writes there too)."""
    return f"{EVENTS_DIR}/{ip}/{process}.jsonl"


def _pid(pid: int | None) -> str:
    return str(pid) if pid else "-"


@dataclass(slots=True)
class TryEvent:
    """One try of a mini-batch, as the node saw it end (ok, failed, timeout, died, stopped)."""

    node: int
    ip: str
    process: str
    pid: int | None
    mini_batch: int
    try_number: int
    status: str
    total: int
    succeeded: int
    start: float  # epoch seconds
    duration: float  # seconds, as the node measured the try
    run_time: float  # seconds in run(), as the worker measured it
    # written after the fact from the mini-batch's record: its node was killed between the
    # record and this event (recovered.py); no duration known
    recovered: bool = False

    KIND = "try"

    @property
    def failed(self) -> int:
        return self.total - self.succeeded

    @property
    def end(self) -> float:
        return self.start + self.duration

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "kind": self.KIND, "node": self.node, "ip": self.ip,
                "process": self.process, "pid": self.pid, "mini_batch": self.mini_batch,
                "try": self.try_number, "status": self.status, "total": self.total,
                "succeeded": self.succeeded, "failed": self.failed, "start": self.start,
                "duration": self.duration, "run_time": self.run_time,
                "recovered": self.recovered}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TryEvent:
        return cls(data["node"], data["ip"], data["process"], data["pid"], data["mini_batch"],
                   data["try"], data["status"], data["total"], data["succeeded"], data["start"],
                   data["duration"], data["run_time"], bool(data.get("recovered", False)))

    @property
    def node_number(self) -> str:
        """The node as people read it everywhere: numbered from 1, as Airflow's UI names node
        tasks ("node 1 of 3"); "unknown" for a recovered try whose node is not known."""
        return node_number(self.node)

    def _seconds(self, value: float) -> str:
        return "-" if self.recovered else f"{value:.3f}"

    def sys_line(self) -> str:
        """The line of logs/sys/node/<ip>/<process>.txt."""
        return (f"{logs.timestamp(self.end)} node={self.node_number} ip={self.ip} "
                f"pid={_pid(self.pid)} "
                f"mini_batch={self.mini_batch} try={self.try_number} status={self.status} "
                f"total={self.total} succeeded={self.succeeded} failed={self.failed} "
                f"start={logs.timestamp(self.start)} duration={self._seconds(self.duration)} "
                f"run_time={self._seconds(self.run_time)}"
                + (" recovered=yes (its node was killed before it logged this try)\n"
                   if self.recovered else "\n"))

    def csv_row(self) -> list[object]:
        """A row of processed_mini_batches.csv, in the order of its columns."""
        return [self.node_number, self.ip, self.process, _pid(self.pid), self.mini_batch,
                self.try_number, self.status, self.total, self.succeeded, self.failed,
                logs.timestamp(self.start), self._seconds(self.duration),
                self._seconds(self.run_time), "yes" if self.recovered else ""]


@dataclass(slots=True)
class ErrorEvent:
    """An error of a worker process: in init(), in a try of a mini-batch, or in shutdown()."""

    time: float  # epoch seconds
    node: int
    ip: str
    process: str
    pid: int | None
    what: str  # "init", "shutdown" or "mini-batch N try K"
    mini_batch: int | None
    try_number: int | None
    error: str  # one line
    details: str = ""  # the traceback or stack, when there is one

    KIND = "error"

    @classmethod
    def now(cls, node: int, ip: str, process: str, pid: int | None, error: str,
            details: str = "", mini_batch: int | None = None, try_number: int | None = None,
            what: str = "init") -> ErrorEvent:
        """An error happening now; ``what`` is for errors outside a mini-batch."""
        if mini_batch is not None:
            what = f"mini-batch {mini_batch} try {try_number}"
        return cls(time.time(), node, ip, process, pid, what, mini_batch, try_number, error,
                   details)

    @property
    def where(self) -> str:
        return f"{self.what} ({self.process} pid {_pid(self.pid)})"

    @property
    def human_log(self) -> str:
        """The process's error log for people, where the whole traceback is."""
        return logs.user_error(self.ip, self.process)

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "kind": self.KIND, "time": self.time, "node": self.node,
                "ip": self.ip, "process": self.process, "pid": self.pid, "what": self.what,
                "mini_batch": self.mini_batch, "try": self.try_number, "error": self.error,
                "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorEvent:
        return cls(data["time"], data["node"], data["ip"], data["process"], data["pid"],
                   data["what"], data["mini_batch"], data["try"], data["error"], data["details"])

    def head(self) -> str:
        return f"{logs.timestamp(self.time)} {self.process} pid {_pid(self.pid)} {self.what}: {self.error}"

    def block(self) -> str:
        """The event in logs/user/error/<ip>/<process>.txt: a marked line, then the details."""
        return f"{logs.ERROR_EVENT}{self.head()}\n{self.details}\n"

    def summary_line(self) -> str:
        """The event's line in logs/user/error.txt, pointing at its full traceback."""
        return f"{self.head().rstrip()} (details: {self.human_log})"


Event = TryEvent | ErrorEvent


def node_number(index: int) -> str:
    """A node index (0-based in events and plans) as people read it: from 1, or "unknown"."""
    return "unknown" if index < 0 else str(index + 1)


def to_line(event: Event) -> str:
    return json.dumps(event.to_dict()) + "\n"


def write_error(location: LocalLocation, event: ErrorEvent) -> None:
    """Append the error's record, then its block for people (errors are rare: no fd kept)."""
    location.append_text(event_log(event.ip, event.process), to_line(event))
    location.append_text(event.human_log, event.block())


# -- reading ---------------------------------------------------------------------------------


@dataclass
class JobEvents:
    """Every event of a job, and what the reader had to leave out."""

    tries: list[TryEvent] = field(default_factory=list)
    errors: list[ErrorEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def sorted_tries(self) -> list[TryEvent]:
        return sorted(self.tries, key=lambda t: (t.mini_batch, t.try_number, t.start))

    def sorted_errors(self) -> list[ErrorEvent]:
        """Oldest first (ties: by process), as logs/user/error.txt lists them."""
        return sorted(self.errors, key=ErrorEvent.summary_line)


_KINDS: dict[str, Any] = {TryEvent.KIND: TryEvent, ErrorEvent.KIND: ErrorEvent}


def _parse(line: str) -> Event | str:
    """The event of a line, or why it was left out."""
    try:
        data = json.loads(line)
        if data.get("v") != VERSION:
            return f"event version {data.get('v')!r}: this version reads {VERSION}"
        event: Event = _KINDS[data["kind"]].from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"not an event ({type(exc).__name__})"
    return event


def _lines(location: OutputLocation, rel: str) -> Iterator[tuple[int, str | None]]:
    """The lines of a log, numbered; None for a last line without its newline: torn by a
    crash while it was written."""
    data = location.read_bytes(rel)
    if not data:
        return
    lines = data.decode("utf-8", "replace").split("\n")
    yield from enumerate(lines[:-1], 1)
    if lines[-1]:
        yield len(lines), None


def read_events(location: OutputLocation) -> JobEvents:
    """Every event in the job's event logs; unreadable lines are left out with a note."""
    found = JobEvents()
    for ip in sorted(location.listdir(EVENTS_DIR)):
        for name in sorted(location.listdir(f"{EVENTS_DIR}/{ip}")):
            if not name.endswith(".jsonl"):
                continue
            rel = f"{EVENTS_DIR}/{ip}/{name}"
            for number, line in _lines(location, rel):
                event = _parse(line) if line is not None else "torn by a crash while it was written"
                if isinstance(event, TryEvent):
                    found.tries.append(event)
                elif isinstance(event, ErrorEvent):
                    found.errors.append(event)
                else:
                    found.notes.append(f"{rel} line {number} left out: {event}")
    return found
