"""The resource monitor: a daemon thread of the node that samples the machine and its workers.

Every ``resource_monitor_interval`` seconds it appends one sample to the CSV files under
``logs/perf/<ip>/`` of the node's local work location, and once a minute it writes a
snapshot of the process table::

    node_resource_usage.csv        one row per sample: the machine's cpu, memory, disk, network
    processes_resource_usage.csv   one row per worker process per sample
    node_disk_usage.csv            one row per sample per file system (output folder, temp dir)
    os/<%Y%m%d%H>/processes_<%M>   the process table, like ``ps``

Sampling happens off the node's thread and never raises into it: a worker that exits between
two samples, or a counter this machine does not have, costs a missing value, not the job.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil

from . import logs
from .storage import LocalLocation

log = logging.getLogger(__name__)

NODE_USAGE = "node_resource_usage.csv"
PROCESSES_USAGE = "processes_resource_usage.csv"
DISK_USAGE = "node_disk_usage.csv"

NODE_COLUMNS = ("time", "cpu_percent", "cpu_count", "memory_total_mb", "memory_used_mb",
                "memory_percent", "swap_used_mb", "disk_read_mb", "disk_write_mb",
                "net_sent_mb", "net_recv_mb", "load_1m")
PROCESS_COLUMNS = ("time", "process", "pid", "cpu_percent", "rss_mb", "threads", "children")
DISK_COLUMNS = ("time", "mount", "total_gb", "used_gb", "free_gb", "percent")

MB = 1024 ** 2
GB = 1024 ** 3
COMMAND_WIDTH = 2000  # characters of a command line kept in a process table snapshot
TABLE_EVERY = 60.0  # seconds at least between two process tables of one monitor
SETTLE = 1.0  # seconds after its start a monitor waits before walking the process table

T = TypeVar("T")

# The nodes of one machine that run in one process (``parallel-run --node-count N``) watch
# the same processes: each table snapshot is written by the first of them (per file, a
# minute each), and psutil's clocks of every process are started once, not once per node.
# Walking every process of the machine is what a monitor costs; N walks at a node's start
# and end were a large part of a short job's fixed cost.
_tables_lock = threading.Lock()
_tables_busy: set[str] = set()  # being written now
_tables_written: set[str] = set()  # written by this process (a later job may have removed it)
_clocks_started = threading.Lock()
_clocks = {"started": False}


def perf_rel(ip: str, name: str) -> str:
    """``logs/perf/<ip>/<name>``: where a node's resource files live."""
    return f"logs/perf/{ip}/{name}"


def snapshot_rel(ip: str, moment: datetime) -> str:
    return perf_rel(ip, f"os/{moment:%Y%m%d%H}/processes_{moment:%M}")


class ResourceMonitor:
    """Samples this machine and the processes ``processes()`` names, every ``interval`` s.

    :param work: the node's local location; files go under its ``logs/perf/<ip>/``.
    :param ip: the node's address, the folder name.
    :param interval: seconds between samples; 0 (or less) turns the monitor off.
    :param processes: called at each sample, from the monitor's thread: ``{"process000": pid}``
        of the workers alive right now.
    :param redact: applied to every command line of a process table snapshot (secrets masker).
    """

    def __init__(self, work: LocalLocation, ip: str, interval: float,
                 processes: Callable[[], dict[str, int]], *,
                 redact: Callable[[str], str] | None = None) -> None:
        self.work = work
        self.ip = ip
        self.interval = float(interval)
        self.processes = processes
        self.redact = redact
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # psutil measures a process's cpu percent since its previous call on the same object
        self._workers: dict[int, psutil.Process] = {}
        self._cpu_times = psutil.cpu_times()
        self._cpu_count = psutil.cpu_count() or 0
        self._mounts: list[str] = []
        self._headers_checked: set[str] = set()
        self._last_table: float | None = None  # monotonic time of the last table
        self._failures = 0

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=f"resource-monitor-{self.ip}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Take a last sample and end the thread."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        self._sample()

    # -- the thread ------------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._mounts = _mounts_of([str(self.work.root), tempfile.gettempdir()])
            if self.interval <= 2 * SETTLE:
                _start_process_clocks()
        except Exception:
            log.warning("resource monitor: could not prepare", exc_info=True)
        if self.interval > 2 * SETTLE:
            self._first_table()
        while not self._stopping.wait(self.interval):
            self._sample()

    def _first_table(self) -> None:
        """The first sample is far off: the first table is taken once the workers have
        started (walking every process then slows the node's start, and a table taken at its
        end would show no worker), with the CPU they used in the second before."""
        if self._stopping.wait(SETTLE):
            return
        self._guarded(_start_process_clocks)
        if not self._stopping.wait(SETTLE):
            self._guarded(lambda: self._snapshot(datetime.now(tz=UTC)))

    def _sample(self) -> None:
        """One sample; each file on its own, so one failing counter costs only its file."""
        moment = datetime.now(tz=UTC)
        now = logs.timestamp(moment.timestamp())
        self._guarded(lambda: self._append(NODE_USAGE, NODE_COLUMNS, [self._node_row(now)]))
        self._guarded(lambda: self._append(PROCESSES_USAGE, PROCESS_COLUMNS,
                                           self._process_rows(now)))
        self._guarded(lambda: self._append(DISK_USAGE, DISK_COLUMNS, self._disk_rows(now)))
        self._guarded(lambda: self._snapshot(moment))

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except OSError as exc:  # a full disk: a line, not a traceback
            self._failures += 1
            if self._failures == 1:
                log.warning("resource monitor: a sample failed (%s); going on",
                            exc.strerror or exc)
        except Exception:
            # the first failure is worth a warning with its traceback; a repeating one is not
            self._failures += 1
            if self._failures == 1:
                log.warning("resource monitor: a sample failed; going on", exc_info=True)
            else:
                log.debug("resource monitor: a sample failed", exc_info=True)

    def _snapshot(self, moment: datetime) -> None:
        """The process table, once a minute: walking every process is the costly part."""
        started = time.monotonic()
        if self._last_table is not None and started - self._last_table < TABLE_EVERY:
            return
        self._last_table = started
        rel = snapshot_rel(self.ip, moment)
        target = str(self.work.path(rel))
        with _tables_lock:  # another node of this process writes (or wrote) it: done
            if target in _tables_busy or (target in _tables_written and os.path.exists(target)):
                return
            _tables_busy.add(target)
        try:
            self.work.write_atomic(rel, process_table(self.redact).encode())
            _tables_written.add(target)
        finally:
            with _tables_lock:
                _tables_busy.discard(target)

    # -- rows ------------------------------------------------------------------------------------

    def _node_row(self, now: str) -> list[object]:
        times = psutil.cpu_times()
        cpu = _cpu_percent(self._cpu_times, times)
        self._cpu_times = times
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        disk = _optional(psutil.disk_io_counters)
        net = _optional(psutil.net_io_counters)
        load = _optional(os.getloadavg)
        return [now, f"{cpu:.1f}", self._cpu_count, _mb(memory.total), _mb(memory.used),
                f"{memory.percent:.1f}", _mb(swap.used),
                _mb(disk.read_bytes) if disk else "", _mb(disk.write_bytes) if disk else "",
                _mb(net.bytes_sent) if net else "", _mb(net.bytes_recv) if net else "",
                f"{load[0]:.2f}" if load else ""]

    def _process_rows(self, now: str) -> list[list[object]]:
        try:
            workers = dict(self.processes())
        except Exception:
            log.debug("resource monitor: processes() failed", exc_info=True)
            workers = {}
        # forget workers that are gone, so a replacement with a reused pid starts afresh
        alive = set(workers.values())
        for pid in [p for p in self._workers if p not in alive]:
            del self._workers[pid]
        if not workers:
            return []
        children = _children_of_each_process()
        rows: list[list[object]] = []
        for name, pid in sorted(workers.items()):
            try:
                process = self._worker(pid)
                with process.oneshot():
                    cpu = process.cpu_percent(None)
                    rss = process.memory_info().rss
                    threads = process.num_threads()
                rows.append([now, name, pid, f"{cpu:.1f}", _mb(rss), threads,
                             _count_descendants(pid, children)])
            except psutil.Error:  # it exited (or was replaced) since processes() answered
                self._workers.pop(pid, None)
        return rows

    def _worker(self, pid: int) -> psutil.Process:
        process = self._workers.get(pid)
        if process is None or not process.is_running():
            process = psutil.Process(pid)
            process.cpu_percent(None)  # starts its clock; the next sample has a real value
            self._workers[pid] = process
        return process

    def _disk_rows(self, now: str) -> list[list[object]]:
        rows: list[list[object]] = []
        for mount in self._mounts:
            try:
                usage = psutil.disk_usage(mount)
            except OSError:
                continue
            rows.append([now, mount, _gb(usage.total), _gb(usage.used), _gb(usage.free),
                         f"{usage.percent:.1f}"])
        return rows

    # -- files -----------------------------------------------------------------------------------

    def _append(self, name: str, columns: Iterable[str], rows: list[list[object]]) -> None:
        rel = perf_rel(self.ip, name)
        if rel not in self._headers_checked:
            _create_with_header(self.work.path(rel), ",".join(columns) + "\n")
            self._headers_checked.add(rel)
        if rows:
            self.work.append_text(rel, "".join(_csv_line(row) for row in rows))


def _start_process_clocks() -> None:
    """The first cpu_percent of each process is meaningless: start the clocks, once per process."""
    with _clocks_started:
        if _clocks["started"]:
            return
        for _ in psutil.process_iter(["cpu_percent"]):
            pass
        _clocks["started"] = True


def process_table(redact: Callable[[str], str] | None = None, root: int | None = None) -> str:
    """This machine's processes, one line each, like ``ps -eo pid,ppid,user,%cpu,rss,stat,args``.

    Only the job's own processes (``root``, this process by default, and its descendants) are
    shown with their command lines, masked by ``redact``; any other is shown by its name: the
    command lines of other users' processes, and their secrets, are none of the job's logs.
    %CPU is measured since the previous table (0.0 for a process seen for the first time).
    """
    lines = [f"# {logs.timestamp()} processes on {_hostname()}",
             f"{'PID':>8} {'PPID':>8} {'USER':<12} {'%CPU':>6} {'RSS_MB':>9} {'STATUS':<10} "
             "COMMAND"]
    attrs = ["pid", "ppid", "username", "cpu_percent", "memory_info", "status", "name"]
    infos = [p.info for p in sorted(psutil.process_iter(attrs, ad_value=None), key=lambda p: p.pid)]
    own = _tree_of(os.getpid() if root is None else root,
                   [(i["pid"], i["ppid"]) for i in infos])
    for info in infos:
        command = f"[{info['name'] or '?'}]"
        if info["pid"] in own:
            command = _command_line(info["pid"]) or command
            if redact is not None:
                command = redact(command)
        command = _one_line(command)
        rss = f"{info['memory_info'].rss / MB:.1f}" if info["memory_info"] else "?"
        cpu = f"{info['cpu_percent']:.1f}" if info["cpu_percent"] is not None else "?"
        lines.append(f"{info['pid']:>8} {info['ppid'] if info['ppid'] is not None else '?':>8} "
                     f"{(info['username'] or '?')[:12]:<12} {cpu:>6} {rss:>9} "
                     f"{info['status'] or '?':<10} {command[:COMMAND_WIDTH]}")
    return "\n".join(lines) + "\n"


def _tree_of(root: int, parents: list[tuple[int, int | None]]) -> set[int]:
    """``root`` and its descendants, from (pid, ppid) pairs."""
    children: dict[int | None, list[int]] = {}
    for pid, ppid in parents:
        children.setdefault(ppid, []).append(pid)
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def _command_line(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def _one_line(text: str) -> str:
    """A command line as one line: ``bash -c $'a\\nb'`` must not break the table's rows."""
    return text.translate(_CONTROL_ESCAPES)


_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in range(32)} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def _create_with_header(target: Path, header: str) -> None:
    """Create ``target`` holding ``header`` unless it exists, atomically.

    Two nodes on one machine share a folder: the file must never appear without its header,
    nor get a second one (os.link fails when the name exists).
    """
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        tmp.write_text(header)
        os.link(tmp, target)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _csv_line(row: list[object]) -> str:
    return ",".join(_csv_field(value) for value in row) + "\n"


def _csv_field(value: object) -> str:
    text = str(value)
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _cpu_percent(before: Any, after: Any) -> float:
    """Busy share of the cpu time between two ``psutil.cpu_times()``, all cpus together.

    psutil.cpu_percent(None) keeps one "previous" per process; nodes running as threads of one
    process would steal each other's interval, so each monitor keeps its own.
    """
    def total_and_busy(times: Any) -> tuple[float, float]:
        total = sum(times)
        # Linux counts guest time in user time too
        total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        busy = total - times.idle - getattr(times, "iowait", 0.0)
        return total, busy

    total0, busy0 = total_and_busy(before)
    total1, busy1 = total_and_busy(after)
    if total1 <= total0:
        return 0.0
    return max(0.0, min(100.0, 100.0 * (busy1 - busy0) / (total1 - total0)))


def _children_of_each_process() -> dict[int, list[int]]:
    """ppid -> pids: one pass over the process table per sample, whatever the worker count
    (``Process.children()`` would make one pass per worker)."""
    children: dict[int, list[int]] = {}
    for process in psutil.process_iter(["ppid"], ad_value=None):
        if process.info["ppid"] is not None:
            children.setdefault(process.info["ppid"], []).append(process.pid)
    return children


def _count_descendants(pid: int, children: dict[int, list[int]]) -> int:
    count, todo = 0, [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        count += len(kids)
        todo.extend(kids)
    return count


def _mounts_of(paths: list[str]) -> list[str]:
    """The mount points holding ``paths`` (each once), for paths that may not exist yet."""
    mounts = []
    for path in paths:
        current = os.path.realpath(path)
        while not os.path.exists(current):
            current = os.path.dirname(current)
        while not os.path.ismount(current):
            current = os.path.dirname(current)
        if current not in mounts:
            mounts.append(current)
    return mounts


def _optional(fn: Callable[[], T]) -> T | None:
    """A counter this machine may not have (containers without disks, sandboxes)."""
    try:
        return fn()
    except (OSError, RuntimeError, AttributeError):
        return None


def _hostname() -> str:
    try:
        return os.uname().nodename
    except AttributeError:
        return "?"


def _mb(value: float) -> str:
    return f"{value / MB:.1f}"


def _gb(value: float) -> str:
    return f"{value / GB:.2f}"

