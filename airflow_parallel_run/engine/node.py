"""A node: one supervisor running a pool of worker processes over one shard of mini-batches.

Data flow (one thread, no locks)::

    plan chunks --> _next_task() --RunMiniBatch--> worker 1..N --MiniBatchDone/Failed--> _on_message()
                       ^                                |                                   |
                       +--------- retry queue <---------+ timeout / death / failed try      v
                                                                         records (written by the worker
                                                                         or, for failures, by the node)

Workers pull work as they free up: a slow mini-batch holds back only its own worker. A run()
past ``run_invocation_timeout`` gets its worker and everything that worker started killed; a
fresh worker (with its own init()) takes the place. After ``run_max_try`` failed tries the
mini-batch is recorded as failed. Too many init() failures, a broken threshold or abort()
stop the node.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from .. import events, logs
from ..config import ParallelRunConfig
from ..inputs import SideInput
from ..masking import Masker
from ..plan import JobPlan, MiniBatch, iter_plan
from ..progress import OVERVIEW_INTERVAL, write_overview
from ..results import (
    FAILED,
    OK,
    MiniBatchRecord,
    RecordLog,
    read_records,
    write_remote_record,
)
from ..storage import LocalLocation, OutputLocation
from ..thresholds import SharedCounts, Totals, exceeded_while_running
from .feed import Pending, PlanFeed
from .messages import (
    InitFailed,
    MiniBatchDone,
    MiniBatchFailed,
    Ready,
    RunMiniBatch,
    Stop,
    Stopped,
    WorkerSpec,
)
from .processes import WorkerProcess

STARTING, IDLE, BUSY, STOPPING, GONE = "starting", "idle", "busy", "stopping", "gone"
SHUTDOWN_GRACE = 30.0  # seconds for shutdown() before the worker is killed
STOP_GRACE = 5.0  # seconds an idle worker gets to exit once the node is stopping early
LOG_UPLOAD_INTERVAL = 30.0  # seconds between uploads of a remote output's logs
POLL = 1.0  # longest wait without a message: counters of other nodes are read this often


@dataclass
class NodeSpec:
    """What one node needs to run its shard; built by the job (or the Airflow node task)."""

    config: ParallelRunConfig
    plan: JobPlan
    entry_script: str
    working_dir: str
    arguments: list[Any]  # strings, and SideInput objects that become local paths
    output: OutputLocation
    node_index: int
    datasets: dict[str, Any] = field(default_factory=dict)  # name -> dataset (to fetch remote files)
    side_inputs: list[SideInput] = field(default_factory=list)  # fetched once by the node
    secrets: list[str] = field(default_factory=list)  # values masked in every log
    ip: str = field(default_factory=logs.node_ip)


@dataclass
class NodeResult:
    node_index: int
    totals: Totals
    stop_reason: str | None = None  # a threshold, or init() failing too often
    aborted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"node_index": self.node_index, "totals": dict(self.totals.__dict__),
                "stop_reason": self.stop_reason, "aborted": self.aborted}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeResult:
        return cls(data["node_index"], Totals(**data["totals"]), data.get("stop_reason"),
                   data.get("aborted", False))


@dataclass
class _Task:
    batch: MiniBatch
    try_number: int = 1
    local_items: list[str] | None = None
    size: int | None = None  # items, once known (a table piece's rows are known once read)
    fetched: bool = False  # its files were copied into the node's cache


@dataclass
class _Slot:
    """A place in the pool; the process in it is replaced when it dies, the name stays."""

    name: str
    process: WorkerProcess | None = None
    state: str = GONE
    task: _Task | None = None  # running in the worker
    queued: _Task | None = None  # sent ahead: the worker starts it as soon as `task` is done
    since: float = 0.0
    deadline: float = float("inf")


Listener = Callable[[int, MiniBatchRecord], None]


class Node:
    def __init__(self, spec: NodeSpec, indices: range, on_record: Listener | None = None,
                 on_tick: Callable[[], None] | None = None) -> None:
        """``on_record`` hears of every finished mini-batch, ``on_tick`` is called every
        OVERVIEW_INTERVAL seconds while the node runs (for progress lines)."""
        self.spec = spec
        self.on_tick = on_tick
        self.config = spec.config
        self.indices = indices
        self.location = spec.output
        self.on_record = on_record
        self.totals = Totals()
        self.shared = SharedCounts(self.location, spec.node_index)
        self.retries: deque[_Task] = deque()
        self.plan_iter: Iterator[MiniBatch] = iter(())
        self.peeked: MiniBatch | None = None
        self.plan_done = False
        self.init_failures = 0
        self.last_init_error = ""
        self.stop_reason: str | None = None
        self.aborted = False
        self.ppn = int(self.config.process_count_per_node)
        self.slots = [
            _Slot(logs.process_name(spec.node_index, self.ppn, i)) for i in range(self.ppn)
        ]
        self.cache_dir = ""
        self.spec_path = ""
        self.started_early = False
        # Workers write to local disk only: the output folder itself, or for a remote output a
        # staging folder whose records and logs this node uploads.
        self.work: LocalLocation | None = (
            spec.output if isinstance(spec.output, LocalLocation) else None)
        self.published_at = 0.0
        self.overview_at = 0.0
        self.masker = Masker(spec.secrets)
        self.monitor: Any = None  # a monitor.ResourceMonitor once the node has work
        self._log_fds: dict[str, int] = {}
        self._checked_failures = (0, 0)
        self._checked_at = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # a full pipe already means "wake up"
        self.feed: PlanFeed | None = None  # mini-batches straight from the planner (stream())
        self.failed_records: RecordLog | None = None  # records of mini-batches failed here

    # -- public ---------------------------------------------------------------------------------

    def abort(self) -> None:
        """Stop soon, from any thread or a signal handler: running mini-batches are killed."""
        self.aborted = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def start_early(self) -> None:
        """Start the workers (and their init()) while the plan is still being made; a later
        :meth:`assign` gives the node its share. Only for a local output that holds no job
        yet: planning then clears nothing the workers have opened."""
        self._prepare()
        for slot in self.slots:
            self._spawn(slot)
        self.started_early = True

    def stream(self, feed: PlanFeed, on_record: Listener | None) -> None:
        """Take mini-batches from ``feed`` while the planner makes the plan: for a node started
        early (a fresh output, so nothing to resume) that owns every mini-batch of the job.
        :meth:`assign` follows once the plan is complete; :meth:`run` may start before."""
        self.feed = feed
        self.on_record = on_record
        feed.wake_through(self._wake_w)

    def assign(self, job_plan: JobPlan, indices: range, on_record: Listener | None) -> None:
        """The share of a node made (and maybe started) before the plan was ready."""
        self.spec.plan = job_plan
        self.indices = indices
        self.on_record = on_record

    def run(self) -> NodeResult:
        try:
            return self._run()
        finally:
            if self.monitor is not None:
                self.monitor.stop()
            for slot in self.slots:
                if slot.process is not None:
                    slot.process.kill_tree()
                    slot.process = None
            self._close_logs()
            if self.failed_records is not None:
                self.failed_records.close()
            if self.work is not None:
                self.masker.scrub_tree(str(self.work.path("logs")))
            if self.cache_dir and self.location.is_remote:
                self._publish_logs()
            if self.cache_dir:
                shutil.rmtree(self.cache_dir, ignore_errors=True)
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- set-up ---------------------------------------------------------------------------------

    def _arrow_threads(self) -> int:
        """pyarrow threads per worker when reading tables: the cores shared among the workers.

        pyarrow's default is a thread per core in every process; with a pool of workers that
        oversubscribes the cores (the tabular benchmark runs 7% faster with the share). An
        OMP_NUM_THREADS the user sets, on this process or in environment_variables, wins.
        """
        if "OMP_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in self.config.environment_variables:
            return 0
        return max(1, len(os.sched_getaffinity(0)) // self.ppn)

    def _run(self) -> NodeResult:
        if self.feed is not None:  # a fresh job: nothing done yet, the planner feeds us
            self._loop()
            self.shared.publish(self.totals)
            return NodeResult(self.spec.node_index, self.totals, self.stop_reason, self.aborted)
        done = {i: r for i, r in read_records(self.location, self.indices).items() if r.status == OK}
        for index in self._changed_inputs(done):
            del done[index]
        for record in done.values():
            self.totals.add(record)
        self.shared.publish(self.totals)
        todo = len(self.indices) - len(done)
        if todo or self.started_early:
            self.plan_iter = (b for b in iter_plan(self.location, self.indices) if b.index not in done)
            if not self.started_early:
                self._prepare()
                for slot in self.slots[: min(self.ppn, todo)]:
                    self._spawn(slot)
            self._loop()  # workers started early with nothing to do get Stop here
        self.shared.publish(self.totals)
        return NodeResult(self.spec.node_index, self.totals, self.stop_reason, self.aborted)

    def _changed_inputs(self, done: dict[int, MiniBatchRecord]) -> list[int]:
        """Finished mini-batches whose input files changed since they ran: they run again."""
        if not any(r.finished_at is not None for r in done.values()):
            return []
        changed = []
        for batch in iter_plan(self.location, self.indices):
            record = done.get(batch.index)
            if record is None or record.finished_at is None:
                continue
            try:  # ctime too: a file copied in with an old mtime (cp -p, rsync) is new here
                latest = max(max(st.st_mtime, st.st_ctime) for st in map(os.stat, batch.items))
            except OSError:  # gone: its results stay, as the plan still names it
                continue
            if latest > record.finished_at:
                changed.append(batch.index)
        if changed:
            self.location.append_text(logs.MASTER_ROLE, logs.line(
                f"node {self.spec.node_index}: {len(changed)} finished mini-batches have input "
                f"files that changed since they ran (first: {changed[0]}); they run again"))
        return changed

    def _prepare(self) -> None:
        spec = self.spec
        self.cache_dir = tempfile.mkdtemp(prefix=f"parallel-run-node{spec.node_index}-")
        if self.work is None:
            self.work = LocalLocation(os.path.join(self.cache_dir, "staging"))
            self._fetch_earlier_logs()
        side_paths = {side.name: side.fetch(self.cache_dir) for side in spec.side_inputs}
        arguments = [side_paths[a.name] if isinstance(a, SideInput) else str(a)
                     for a in spec.arguments]
        worker_spec = WorkerSpec(
            entry_script=spec.entry_script, working_dir=spec.working_dir,
            arguments=arguments, output_root=str(self.work.root),
            output_action=self.config.output_action,
            append_row_separator=self.config.append_row_separator,
            append_row_dataframe_header=self.config.append_row_dataframe_header,
            logging_level=self.config.logging_level, ip=spec.ip,
            node_index=spec.node_index, side_inputs=side_paths, secrets=list(spec.secrets),
            tables={name: {"options": d.options, "storage_options": d.storage_options}
                    for name, d in spec.datasets.items() if d.kind == "tabular"},
            arrow_threads=self._arrow_threads(),
        )
        self.spec_path = os.path.join(self.cache_dir, "worker_spec.json")
        with open(self.spec_path, "w", encoding="utf-8") as handle:
            handle.write(worker_spec.to_json())
        from ..monitor import ResourceMonitor

        self.monitor = ResourceMonitor(
            self.work, spec.ip, float(self.config.resource_monitor_interval),
            lambda: {s.name: p.pid for s in self.slots if (p := s.process) is not None},
            redact=self.masker.mask if self.masker else None)
        self.monitor.start()
        self.env = dict(os.environ)
        self.env.update(self.config.environment_variables)
        # The worker must import this package even when it is not installed (a source tree).
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, self.env.get("PYTHONPATH")) if p
        )

    def _spawn(self, slot: _Slot) -> None:
        ip = self.spec.ip
        slot.process = WorkerProcess(
            slot.name, self.spec_path,
            str(self.work.path(logs.user_stdout(ip, slot.name))),
            str(self.work.path(logs.user_stderr(ip, slot.name))),
            cwd=self.spec.working_dir, env=self.env,
        )
        slot.state = STARTING
        slot.task = None
        slot.since = time.monotonic()
        self._debug(slot.name, f"started worker pid={slot.process.pid}")
        slot.deadline = slot.since + self.config.effective_init_timeout

    # -- work queue -----------------------------------------------------------------------------

    def _has_work(self) -> bool:
        if self._stopping():
            return False
        if self.retries:
            return True
        if self.peeked is None and not self.plan_done:
            if self.feed is None:
                self.peeked = next(self.plan_iter, None)
            else:
                taken = self.feed.take()
                if isinstance(taken, Pending):
                    return False
                self.peeked = taken
            self.plan_done = self.peeked is None
        return self.peeked is not None

    def _plan_pending(self) -> bool:
        """The planner may still hand us mini-batches: idle workers wait instead of stopping."""
        return self.feed is not None and not self.plan_done and not self._stopping()

    def _next_task(self) -> _Task | None:
        if not self._has_work():
            return None
        if self.retries:
            return self.retries.popleft()
        batch, self.peeked = self.peeked, None
        assert batch is not None
        return _Task(batch)

    def _stopping(self) -> bool:
        return self.aborted or self.stop_reason is not None

    def _size(self, task: _Task) -> int:
        """Items of the mini-batch: counted without running it, for failures and logs."""
        if task.size is None:
            task.size = task.batch.known_size
        if task.size is None:  # a CSV / JSON-lines piece: count its lines
            from ..inputs.tabular import TablePiece, count_rows_estimate

            dataset = self.spec.datasets[task.batch.dataset]
            task.size = count_rows_estimate(TablePiece.from_dict(task.batch.piece or {}),
                                            dataset.options, dataset.storage_options)
        return task.size

    def _local_items(self, task: _Task) -> list[str]:
        """Remote files are fetched to this node's cache; local paths are used as they are."""
        if task.batch.piece is not None:
            return []  # a table piece: the worker reads its rows itself
        if task.local_items is None:
            dataset = self.spec.datasets.get(task.batch.dataset)
            if dataset is None or not dataset.remote:
                task.local_items = task.batch.items  # listed as plain local paths
            else:
                task.local_items = self._fetch(task.batch, dataset)
                task.fetched = True
        return task.local_items

    def _fetch(self, batch: MiniBatch, dataset: Any) -> list[str]:
        import fsspec

        folder = os.path.join(self.cache_dir, f"mb{batch.index}")
        local = []
        for position, url in enumerate(batch.items):
            target = os.path.join(folder, str(position), os.path.basename(url.rstrip("/")))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fs, path = fsspec.core.url_to_fs(url, **dataset.storage_options)
            fs.get(path, target)
            local.append(target)
        return local

    def _release(self, task: _Task) -> None:
        if task.fetched:
            shutil.rmtree(os.path.join(self.cache_dir, f"mb{task.batch.index}"), ignore_errors=True)

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._check_thresholds()
            if self._stopping():
                self._stop_early()
            for slot in self.slots:
                if slot.state == IDLE:
                    self._dispatch(slot)
                if slot.state == BUSY and slot.queued is None:
                    self._send_ahead(slot)
                elif slot.state == GONE and slot.process is None and (
                        self._has_work() or self._plan_pending()):
                    # Never more init() attempts than the limit, even with several in flight.
                    starting = sum(s.state == STARTING for s in self.slots)
                    if self.init_failures + starting < 3 * self.ppn:
                        self._spawn(slot)
            if all(slot.state == GONE for slot in self.slots) and not self._plan_pending():
                return
            if self.location.is_remote and time.monotonic() - self.published_at > LOG_UPLOAD_INTERVAL:
                self._publish_logs()
            if time.monotonic() - self.overview_at >= OVERVIEW_INTERVAL:
                self._write_overview()
            now = time.monotonic()
            timeout = min([POLL] + [max(0.0, s.deadline - now) for s in self.slots])
            waitables: list[Any] = [self._wake_r]
            owners: dict[Any, _Slot] = {}
            for slot in self.slots:
                if slot.process is not None:
                    for w in slot.process.waitables():
                        waitables.append(w)
                        owners[w] = slot
            maybe_exited = set()
            for ready in wait(waitables, timeout):
                if ready == self._wake_r:
                    os.read(self._wake_r, 64)
                    continue
                slot = owners[ready]
                if slot.process is not None and ready is slot.process.conn:
                    self._receive(slot)
                else:  # its pidfd: the process ended
                    maybe_exited.add(slot.name)
            now = time.monotonic()
            for slot in self.slots:
                process = slot.process
                if process is None:
                    continue
                if ((process.pidfd is None or slot.name in maybe_exited)
                        and process.exited() and not process.conn.poll()):
                    self._on_exit(slot)
                elif now >= slot.deadline:
                    self._on_deadline(slot)

    def _dispatch(self, slot: _Slot) -> None:
        task = self._next_task()
        assert slot.process is not None
        if task is None and self._plan_pending():
            return  # idle until the planner puts the next mini-batch (it wakes the loop)
        if task is None:
            try:
                slot.process.conn.send(Stop())
            except OSError:  # already gone: its exit is seen next
                pass
            slot.state = STOPPING
            slot.deadline = time.monotonic() + (STOP_GRACE if self._stopping() else SHUTDOWN_GRACE)
            return
        if self._send(slot, task):
            slot.task = task
            self._started(slot)

    def _send_ahead(self, slot: _Slot) -> None:
        """Give a busy worker its next mini-batch now, so it never waits for the node."""
        task = self._next_task()
        if task is not None and self._send(slot, task):
            slot.queued = task

    def _send(self, slot: _Slot, task: _Task) -> bool:
        assert slot.process is not None
        try:
            items = self._local_items(task)
        except Exception as exc:  # the store refused the files: this try fails, not the node
            self._try_failed(slot.name, task, f"fetching the input files failed: "
                             f"{type(exc).__name__}: {exc}", pid=None)
            return False
        try:
            slot.process.conn.send(RunMiniBatch(
                task.batch.index, task.batch.dataset, items, task.try_number, task.batch.piece,
                versions=task.batch.piece is None and not task.fetched))
        except OSError:  # the worker just died: the task never reached it; its exit is seen next
            self.retries.appendleft(task)
            return False
        self._debug(slot.name, f"sent mini_batch={task.batch.index} try={task.try_number} "
                               f"to pid={slot.process.pid}")
        return True

    def _started(self, slot: _Slot) -> None:
        slot.state = BUSY
        slot.since = time.monotonic()
        slot.deadline = slot.since + float(self.config.run_invocation_timeout)

    def _next_in(self, slot: _Slot) -> None:
        """The running mini-batch is over: the one sent ahead (if any) runs now."""
        slot.task, slot.queued = slot.queued, None
        if slot.task is not None:
            self._started(slot)
        else:
            slot.state = IDLE
            slot.deadline = float("inf")

    def _take_back(self, slot: _Slot) -> None:
        """The worker is gone: the mini-batch sent ahead never started, it goes back in line."""
        if slot.queued is not None:
            self.retries.appendleft(slot.queued)
            slot.queued = None

    def _receive(self, slot: _Slot) -> None:
        process = slot.process
        assert process is not None
        while process.conn.poll():
            try:
                message = process.conn.recv()
            except (EOFError, OSError):  # it is dying: take what it left as its exit
                try:
                    process.popen.wait(timeout=5)
                except Exception:
                    pass
                self._on_exit(slot)
                return
            self._on_message(slot, message)
            if slot.process is not process:
                return

    def _on_message(self, slot: _Slot, message: Any) -> None:
        if isinstance(message, Ready):
            slot.state = IDLE
            slot.deadline = float("inf")
        elif isinstance(message, MiniBatchDone):
            task = slot.task
            assert task is not None and task.batch.index == message.index
            record = MiniBatchRecord(message.index, OK, message.total, message.succeeded,
                                     message.failed, task.try_number)
            if self.location.is_remote:  # the worker wrote it to staging: now it counts
                self._upload_record(record.index, message.written)
            self._sys_line(slot, task, "ok", message.run_seconds, record)
            if message.failed:
                self._error_event(slot.name, slot.process.pid, task,
                                  f"run() returned {message.succeeded} results for "
                                  f"{message.total} items: {message.failed} items count as failed")
            if message.warning:
                self._append_log(logs.sys_node_log(self.spec.ip, slot.name),
                                 logs.line(f"WARNING {message.warning}"))
            self._finished(task, record)
            self._next_in(slot)
        elif isinstance(message, MiniBatchFailed):
            task = slot.task
            assert task is not None and task.batch.index == message.index
            self._sys_line(slot, task, "failed", message.run_seconds, None)
            self._next_in(slot)
            if message.total is not None:
                task.size = message.total
            self._try_failed(slot.name, task, message.error, pid=slot.process.pid, logged=True,
                             retryable=message.retryable)
        elif isinstance(message, InitFailed):
            self._init_failed(slot, message.error)
        elif isinstance(message, Stopped):
            self._retire(slot)

    # -- outcomes -------------------------------------------------------------------------------

    def _finished(self, task: _Task, record: MiniBatchRecord) -> None:
        self._release(task)
        self.totals.add(record)
        if record.failed:
            self.shared.publish(self.totals)
        if self.on_record is not None:
            self.on_record(self.spec.node_index, record)

    def _try_failed(self, process: str, task: _Task, error: str, pid: int | None,
                    logged: bool = False, details: str = "", retryable: bool = True) -> None:
        """A try failed; ``logged`` when the worker already wrote the event with its traceback.

        Not ``retryable`` (the input itself is bad): no more tries, the mini-batch fails now.
        """
        tries = int(self.config.run_max_try)
        if not logged:
            self._error_event(process, pid, task, error, details)
        if retryable and task.try_number < tries and not self._stopping():
            self.retries.appendleft(_Task(task.batch, task.try_number + 1, task.local_items,
                                          task.size, task.fetched))
            return
        if self._stopping():
            return  # not recorded: a later run of the job tries it again
        total = self._size(task)
        record = MiniBatchRecord(task.batch.index, FAILED, total, 0, total, task.try_number)
        if self.location.is_remote:
            write_remote_record(self.location, record.index, record.encode())
        else:
            if self.failed_records is None:
                assert isinstance(self.location, LocalLocation)
                self.failed_records = RecordLog.for_process(
                    self.location, f"{self.spec.ip}-node{self.spec.node_index}")
            self.failed_records.write(record)
        self._finished(task, record)

    def _upload_record(self, index: int, written: tuple[str, int, int] | None) -> None:
        """A record the worker wrote to its staging log, put as the remote record object."""
        assert self.work is not None and written is not None
        rel, offset, length = written
        with open(self.work.path(rel), "rb") as handle:
            handle.seek(offset)
            entry = handle.read(length)
        write_remote_record(self.location, index, entry)

    def _on_deadline(self, slot: _Slot) -> None:
        process = slot.process
        assert process is not None
        if slot.state == STARTING:
            process.kill_tree()
            slot.process = None
            error = (f"init() timed out after {self.config.effective_init_timeout:g} s "
                     "(init_timeout); the worker was killed")
            self._error_event(slot.name, process.pid, None, error)
            self._init_failed(slot, error)
        elif slot.state == BUSY:
            task = slot.task
            assert task is not None
            error = (f"run() timed out after {self.config.run_invocation_timeout} s "
                     "(run_invocation_timeout); the worker and its child processes were killed")
            self._error_event(slot.name, process.pid, task, error,
                              "the stack of run() when it was stopped follows, if it could be taken:")
            process.dump_stack()
            process.kill_tree()
            slot.process = None
            elapsed = time.monotonic() - slot.since
            self._sys_line(slot, task, "timeout", elapsed, None, pid=process.pid)
            slot.task = None
            slot.state = GONE
            self._take_back(slot)
            self._try_failed(slot.name, task, error, pid=process.pid, logged=True)
        else:  # shutdown() overstayed, or a stop was not heeded
            process.kill_tree()
            slot.process = None
            slot.state = GONE

    def _on_exit(self, slot: _Slot) -> None:
        process = slot.process
        assert process is not None
        how = process.describe_exit()
        state, task = slot.state, slot.task
        process.kill_tree()  # its leftovers, if any
        slot.process = None
        slot.state = GONE
        slot.task = None
        self._take_back(slot)
        if state == BUSY and task is not None:
            error = f"the worker process died during run() ({how})"
            self._sys_line(slot, task, "died", time.monotonic() - slot.since, None, pid=process.pid)
            self._try_failed(slot.name, task, error, pid=process.pid)
        elif state == STARTING:
            error = (f"the worker process died before init() finished ({how}); see "
                     f"{logs.user_stderr(self.spec.ip, slot.name)}")
            self._error_event(slot.name, process.pid, None, error)
            self._init_failed(slot, error, already_gone=True)

    def _init_failed(self, slot: _Slot, error: str, already_gone: bool = False) -> None:
        if slot.process is not None and not already_gone:
            slot.process.kill_tree()
        slot.process = None
        slot.state = GONE
        self.init_failures += 1
        self.last_init_error = error
        self._init_gave_up()

    def _init_gave_up(self) -> bool:
        limit = 3 * self.ppn
        if self.init_failures >= limit and self.stop_reason is None:
            self.stop_reason = (f"init() failed {self.init_failures} times (limit 3 x "
                                f"process_count_per_node = {limit}); last: {self.last_init_error}")
        return self.init_failures >= limit

    def _retire(self, slot: _Slot) -> None:
        if slot.process is not None:
            slot.process.kill_tree()
        slot.process = None
        slot.state = GONE

    def _check_thresholds(self) -> None:
        """After a failure here, and every POLL seconds for the other nodes' failures."""
        now = time.monotonic()
        failures = (self.totals.failed_items, self.totals.failed_mini_batches)
        if self.stop_reason is None and (failures != self._checked_failures
                                         or now - self._checked_at >= POLL):
            self._checked_failures, self._checked_at = failures, now
            self.stop_reason = exceeded_while_running(self.config, self.shared.job_totals(self.totals))
            if self.stop_reason:
                self.location.append_text(logs.MASTER_ROLE, logs.line(
                    f"threshold check on node {self.spec.node_index}: {self.stop_reason}; "
                    "no new mini-batch starts, running ones are stopped"))

    def _stop_early(self) -> None:
        """No new mini-batch; running ones are killed; idle workers are told to stop."""
        for slot in self.slots:
            if slot.state in (BUSY, STARTING) and slot.process is not None:
                if slot.task is not None:
                    self._sys_line(slot, slot.task, "stopped", time.monotonic() - slot.since, None)
                slot.process.kill_tree()
                slot.process = None
                slot.task = None
                slot.queued = None  # not recorded: a later run of the job runs it
                slot.state = GONE

    # -- logs -----------------------------------------------------------------------------------

    def _append_log(self, rel: str, text: str) -> None:
        """Append a line to one of this node's logs through a descriptor kept open."""
        fd = self._log_fds.get(rel)
        if fd is None:
            path = self.work.path(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._log_fds[rel] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, text.encode("utf-8", "backslashreplace"))

    def _close_logs(self) -> None:
        for fd in self._log_fds.values():
            os.close(fd)
        self._log_fds.clear()

    def _debug(self, process: str, text: str) -> None:
        """Worker life and dispatch details, with logging_level DEBUG only."""
        if self.config.logging_level == "DEBUG":
            self._append_log(logs.sys_node_log(self.spec.ip, process), logs.line(f"DEBUG {text}"))

    def _error_event(self, process: str, pid: int | None, task: _Task | None, error: str,
                     details: str = "") -> None:
        """An error of a try (``task``), or of init() when there is no task."""
        events.write_error(self.work, events.ErrorEvent.now(
            self.spec.node_index, self.spec.ip, process, pid, error, details,
            task.batch.index if task else None, task.try_number if task else None))

    def _fetch_earlier_logs(self) -> None:
        """A node task run again appends to its processes' logs, not over them."""
        for slot in self.slots:
            for rel in (*logs.process_logs(self.spec.ip, slot.name),
                        events.event_log(self.spec.ip, slot.name)):
                target = self.work.path(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                self.location.get_file(rel, str(target))

    def _write_overview(self) -> None:
        """Share this node's counts, and rewrite the job's overview from everyone's."""
        self.overview_at = time.monotonic()
        if self.spec.plan is None:  # started early, and the job did not come to run
            return
        self.shared.publish(self.totals)
        write_overview(self.location, self.spec.plan, self.shared.job_totals(self.totals, fresh=True))
        if self.on_tick is not None:
            self.on_tick()

    def _publish_logs(self) -> None:
        self.published_at = time.monotonic()
        self.masker.scrub_tree(str(self.work.path("logs")))
        self.location.upload_tree(str(self.work.root))

    def _sys_line(self, slot: _Slot, task: _Task, status: str, run_seconds: float,
                  record: MiniBatchRecord | None, pid: int | None = None) -> None:
        now = time.monotonic()
        total = record.total if record else self._size(task)
        event = events.TryEvent(
            self.spec.node_index, self.spec.ip, slot.name,
            pid or (slot.process.pid if slot.process else None), task.batch.index,
            task.try_number, status, total, record.succeeded if record else 0,
            time.time() - (now - slot.since), now - slot.since, run_seconds)
        self._append_log(events.event_log(self.spec.ip, slot.name), events.to_line(event))
        self._append_log(logs.sys_node_log(self.spec.ip, slot.name), event.sys_line())
