"""Every process a node's workers started, found and ended, even those that left the tree.

A worker's own session is not enough: ``setsid`` (or a double fork) takes a daemon out of
it, and its parent's exit hands it to the machine's init. So:

- the node's process is a *child subreaper* (Linux): orphans of its workers come back to
  it, not to init, and stay among its descendants;
- each worker, and so everything it starts, carries a tag in its environment
  (:data:`TAG`: the node's token and the worker's number), which tells the node's
  descendants apart from other processes of the same process (other nodes' threads);
- the tracker samples them (by tree and by tag) as the node runs, and ends those of a
  worker when the worker is killed or replaced, and all of them when the node ends;
- what it saw is recorded (pid and start time, never a name) in the job's state folder, so
  that after a SIGKILL of the whole node the next run of the job ends what is left: only
  processes of this host whose pid *and* start time both match, once the node that recorded
  them is gone (a concurrent run's live processes are not a dead run's leftovers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import uuid
from typing import Any

import psutil

from ..storage import STATE_DIR, OutputLocation

TAG = "PARALLEL_RUN_WORKER"  # environment variable: "<node token>:<worker number>"
PROCESSES_DIR = f"{STATE_DIR}/processes"
SAMPLE_INTERVAL = 0.25  # seconds between samples, however often the node's loop turns
PR_SET_CHILD_SUBREAPER = 36

Known = tuple[int, float]  # pid, create_time: one process, never mistaken for a later one


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants; False where it cannot be."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def record_path(node_index: int) -> str:
    return f"{PROCESSES_DIR}/node-{node_index}.json"


class ProcessTracker:
    """The processes one node's workers started: sampled, recorded, ended."""

    def __init__(self, location: OutputLocation, node_index: int) -> None:
        self.location = location
        self.rel = record_path(node_index)
        self.token = uuid.uuid4().hex
        self.subreaper = become_subreaper()
        self.workers: dict[int, str] = {}  # worker pid -> its tag
        self.seen: dict[Known, str] = {}  # each process seen -> the tag of its worker
        self._looked: dict[Known, str | None] = {}  # every descendant looked at -> its tag
        self._count = 0
        self._sampled_at = 0.0
        self._recorded: set[Known] = set()

    def new_tag(self) -> str:
        self._count += 1
        return f"{self.token}:{self._count}"

    def started(self, pid: int, tag: str) -> None:
        self.workers[pid] = tag

    # -- finding ----------------------------------------------------------------------------

    def sample(self, force: bool = False) -> None:
        """Look for new processes of the workers (at most every SAMPLE_INTERVAL seconds)."""
        now = time.monotonic()
        if not force and now - self._sampled_at < SAMPLE_INTERVAL:
            return
        self._sampled_at = now
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(psutil.Error):
                self._look_at(psutil.Process(pid))
        self._reap()
        self._record()

    def _look_at(self, proc: psutil.Process) -> None:
        if proc.pid in self.workers:
            return
        try:
            known = (proc.pid, proc.create_time())
            if known not in self._looked:
                self._looked[known] = self._tag_of(proc)
        except psutil.Error:
            return
        tag = self._looked[known]
        if tag is not None:
            self.seen[known] = tag

    def _tag_of(self, proc: psutil.Process) -> str | None:
        """Its worker's tag: by its environment, or (when it cleared it) by its ancestry."""
        tag = proc.environ().get(TAG, "")
        if tag.startswith(self.token + ":"):
            return tag
        for parent in proc.parents():
            if parent.pid in self.workers:
                return self.workers[parent.pid]
        return None

    # -- ending -----------------------------------------------------------------------------

    def end_worker(self, pid: int) -> None:
        """The worker ``pid`` is killed: end every process it started, wherever it went."""
        tag = self.workers.pop(pid, None)
        if tag is not None:
            self.sample(force=True)
            self._end([known for known, t in self.seen.items() if t == tag])

    def end_all(self) -> None:
        """The node ends: no process of its workers outlives it, and the record goes."""
        self.sample(force=True)
        self._end(list(self.seen))
        self.workers.clear()
        if self._recorded:
            self.location.remove(self.rel)
            self._recorded = set()

    def _end(self, processes: list[Known]) -> None:
        alive = [p for p in (_process(known) for known in processes) if p is not None]
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        _wait_gone(alive)
        for known in processes:
            self.seen.pop(known, None)
        self._record()

    def _reap(self) -> None:
        """Orphans that came back to us and ended are our zombies: wait for them."""
        for known in list(self.seen):
            proc = _process(known, zombie=True)
            try:
                if proc is not None and proc.status() != psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                pass
            else:
                if proc is not None:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(known[0], os.WNOHANG)
            self.seen.pop(known)

    def _record(self) -> None:
        """Rewrite the record when what is alive changed (rarely: only scripts that start
        processes have any), for the next run to end what a SIGKILL left."""
        current = set(self.seen)
        if current == self._recorded:
            return
        self.location.write_json(self.rel, {
            "host": socket.gethostname(),
            "owner": [os.getpid(), psutil.Process().create_time()],
            "processes": sorted([pid, created] for pid, created in current)})
        self._recorded = current


def _descendants(root: int) -> list[int]:
    """The pids under ``root``, read from its tree alone (``/proc/PID/task/TID/children``):
    psutil's way reads every process of the machine, some 20 ms a time on a busy one."""
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as handle:
                    children = [int(child) for child in handle.read().split()]
            except FileNotFoundError:
                if pid == root and not os.path.exists(f"/proc/{pid}/task/{tid}/children"):
                    return _descendants_by_psutil(root)  # a kernel without that file
                continue
            except OSError:
                continue
            found += children
            todo += children
    return found


def _descendants_by_psutil(root: int) -> list[int]:
    try:
        return [proc.pid for proc in psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return []


def _process(known: Known, zombie: bool = False) -> Any:
    """The process still running as ``known`` (same pid, same start time), else None."""
    pid, created = known
    try:
        proc = psutil.Process(pid)
        if proc.create_time() != created or (not zombie and proc.status() == psutil.STATUS_ZOMBIE):
            return None
        return proc
    except psutil.Error:
        return None


def end_leftovers(location: OutputLocation, node_index: int | None = None) -> int:
    """End what a dead earlier run of the job left (of node ``node_index``, or of every node):
    only processes of this host, not this one, whose pid and start time match the record, and
    only when the node that recorded them is gone (a record of a live node is left alone).
    The number ended."""
    rels = ([record_path(node_index)] if node_index is not None
            else [f"{PROCESSES_DIR}/{name}" for name in location.listdir(PROCESSES_DIR)])
    ended = []
    for rel in rels:
        record = location.read_json(rel)
        if (not record or record.get("host") != socket.gethostname()
                or _process(tuple(record.get("owner", (0, 0.0)))) is not None):
            continue
        for pid, created in record.get("processes", []):
            proc = _process((pid, created)) if pid != os.getpid() else None
            if proc is not None:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGKILL)
                    ended.append(proc)
        location.remove(rel)
    _wait_gone(ended)
    return len(ended)


def _wait_gone(processes: list[psutil.Process], timeout: float = 5.0) -> None:
    """Until each killed process is gone or a zombie (reaped here when it is our child: a
    zombie of another parent is that parent's to reap)."""
    deadline = time.monotonic() + timeout
    left = list(processes)
    while left and time.monotonic() < deadline:
        still = []
        for proc in left:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(proc.pid, os.WNOHANG)
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    still.append(proc)
            except psutil.Error:
                pass
        left = still
        if left:
            time.sleep(0.01)
