"""A node: one supervisor running a pool of worker processes over one shard of mini-batches.

The data flow::

    planning thread |  node thread (the loop below)                       |  worker processes
    ----------------+-----------------------------------------------------+-----------------
    put() -> PlanFeed --+                                                  |
    plan files ---------+-> WorkQueue --next()--> WorkerPool ---RunMiniBatch---> worker 1..N
                              ^  (retries first)   (slots)                 |    init(), run(),
                              |                                            |    shutdown()
                   retry(), put_back()                                     |       |
                              |                                            |       v
                      WorkerEvents <-- Ready, MiniBatchDone, MiniBatchFailed, InitFailed,
                              |           Stopped; an exit (pidfd); a deadline passed
                              v                                            |
                   Outcomes (counts shared with the other nodes,           |   records of the
                   records of failed mini-batches), NodeLogs               |   mini-batches run

Threads: the loop runs on the node's own thread and alone touches the pool, the queue,
the logs and the counts. Other threads reach in at three points: :meth:`Node.abort` (any
thread, or a signal handler) sets a flag and wakes the loop through its pipe; the planning
thread fills the :class:`PlanFeed` that the loop reads (no lock: see feed.py; a put wakes
the loop through the same pipe); and for a node fed while planning, :meth:`Node.assign`
hands over the finished plan, whole attributes the loop reads when it next needs them.

Each turn of the loop is named steps: check the thresholds (and stop early if one broke),
hand out work, report progress, wait, handle messages, handle exits and deadlines. Workers
pull work as they free up and get their next mini-batch ahead, so a slow mini-batch holds
back only its own worker. A run() past ``run_invocation_timeout`` gets its worker and
everything that worker started killed; a fresh worker (with its own init()) takes the
place. After ``run_max_try`` failed tries the mini-batch is recorded as failed. Too many
init() failures, a broken threshold or abort() stop the node.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import logs
from ..config import ParallelRunConfig
from ..errors import StoreUnavailable
from ..inputs import SideInput
from ..leases import has_atomic_create
from ..masking import Masker
from ..plan import JobPlan, iter_plan
from ..storage import OutputLocation
from ..thresholds import Totals
from .checks import check_node_machine
from .feed import PlanFeed
from .node_cache import NodeCache
from .node_logs import NodeLogs
from .outcomes import Listener, Outcomes
from .ownership import node_temp_prefix
from .pool import CLOSED, Slot, SlotState, Woken, WorkerPool
from .processes import WorkerProcess
from .reaper import end_leftovers
from .resume import finished_earlier, recover_lost_tries
from .sharing import SharedWork
from .work_queue import Task, WorkQueue
from .worker_events import WorkerEvents

SHUTDOWN_GRACE = 30.0  # seconds for shutdown() before the worker is killed
STOP_GRACE = 5.0  # seconds an idle worker gets to exit once the node is stopping early
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


def shares_work(spec: NodeSpec) -> bool:
    """Nodes claim units from each other: work_sharing on, more than one node, and a store
    with an atomic create (else each node runs its fixed share)."""
    plan = spec.plan
    return (plan is not None and plan.node_count > 1 and spec.config.work_sharing
            and has_atomic_create(spec.output))


STARTING, IDLE, BUSY, GONE = SlotState.STARTING, SlotState.IDLE, SlotState.BUSY, SlotState.GONE


class _WakeUp:
    """A pipe whose read end the loop waits on: written by abort() and by the planner's feed."""

    def __init__(self) -> None:
        self.reader, self.writer = os.pipe()
        os.set_blocking(self.writer, False)  # a full pipe already means "wake up"

    def wake(self) -> None:
        try:
            os.write(self.writer, b"x")
        except OSError:
            pass

    def clear(self) -> None:
        os.read(self.reader, 64)

    def close(self) -> None:
        os.close(self.reader)
        os.close(self.writer)


class Node:
    """Supervises the worker pool over one shard of the plan (see the module's docstring)."""

    def __init__(self, spec: NodeSpec, indices: range, on_record: Listener | None = None,
                 on_tick: Callable[[], None] | None = None) -> None:
        """``on_record`` hears of every finished mini-batch, ``on_tick`` is called every
        OVERVIEW_INTERVAL seconds while the node runs (for progress lines)."""
        self.spec = spec
        self.config = spec.config
        self.indices = indices
        self.location = spec.output
        self.on_tick = on_tick
        self.outcomes = Outcomes(self.location, spec.node_index, spec.ip, on_record, POLL)
        self.stop_reason: str | None = None
        self.aborted = False
        self.started_early = False
        check_node_machine(self.config)
        self.ppn = int(self.config.process_count_per_node)
        self.pool = WorkerPool(
            [logs.process_name(spec.node_index, self.ppn, i) for i in range(self.ppn)],
            self._launch, self.config.effective_init_timeout,
            float(self.config.run_invocation_timeout), init_budget=3 * self.ppn)
        self.queue = WorkQueue(int(self.config.run_max_try), self.stopping)
        self.masker = Masker(spec.secrets)
        self.logs = NodeLogs(spec, self.masker)
        self.cache_dir = ""  # made once the node has work, removed when it ends
        self.cache: NodeCache | None = None
        self.sharing: SharedWork | None = None  # when the nodes share the work
        self._wakeup = _WakeUp()
        self.events = WorkerEvents(self)

    # -- public ---------------------------------------------------------------------------------

    def abort(self) -> None:
        """Stop soon, from any thread or a signal handler: running mini-batches are killed."""
        self.aborted = True
        self._wakeup.wake()

    def start_early(self) -> None:
        """Start a worker (and its init()) while the plan is made, others as mini-batches come
        (:meth:`stream`); :meth:`assign` gives the node its share later. Only for a local output
        that holds no job yet: planning then clears nothing the workers have opened. A table
        job's first worker also comes with the first mini-batch: its template imports now."""
        self._start_workers(0 if any(d.kind == "tabular" for d in self.spec.datasets.values())
                            else 1)
        self.started_early = True

    def stream(self, feed: PlanFeed, on_record: Listener | None) -> None:
        """Take mini-batches from ``feed`` while the planner makes the plan: for a node started
        early (a fresh output, so nothing to resume) that owns every mini-batch of the job.
        :meth:`assign` follows once the plan is complete; :meth:`run` may start before."""
        self.queue.read_feed(feed)
        self.outcomes.on_record = on_record
        feed.wake_through(self._wakeup.writer)

    def assign(self, job_plan: JobPlan, indices: range, on_record: Listener | None) -> None:
        """The share of a node made (and maybe started) before the plan was ready."""
        self.spec.plan = job_plan
        self.indices = indices
        self.outcomes.on_record = on_record

    def run(self) -> NodeResult:
        try:
            if self.queue.feeding or self._resume():  # fed: a fresh job, nothing to resume
                self._loop()
            self.outcomes.publish()
            return NodeResult(self.spec.node_index, self.outcomes.totals, self.stop_reason,
                              self.aborted)
        finally:
            self.pool.kill_all()
            if self.cache is not None:
                self.cache.close()
                self.cache.stop_pump()
            # not to a store that stopped answering: that would wait for it again
            self.logs.close(publish=not isinstance(sys.exc_info()[1], StoreUnavailable))
            self.outcomes.close()
            if self.cache_dir:
                shutil.rmtree(self.cache_dir, ignore_errors=True)
            self._wakeup.close()

    # -- set-up ---------------------------------------------------------------------------------

    def _resume(self) -> bool:
        """Count what earlier runs finished, and queue the rest: False when nothing is to run."""
        if shares_work(self.spec):  # claims of units of the whole plan, not a fixed share
            self.sharing = SharedWork(self.spec, self.outcomes, self.queue, self.logs.master)
            return self.sharing.start() and (self.started_early or self._start_workers(self.ppn))
        done = finished_earlier(self.location, self.indices, self.spec.node_index, self.logs.master)
        if done:
            recover_lost_tries(self.location, self.indices, self.spec.node_index)
        self.outcomes.counted_before(done.values())
        todo = len(self.indices) - len(done)
        if not todo and not self.started_early:
            return False
        self.queue.read_plan(b for b in iter_plan(self.location, self.indices) if b.index not in done)
        if not self.started_early:  # workers started early with nothing to do are stopped
            self._start_workers(min(self.ppn, todo))
        return True

    def _start_workers(self, count: int) -> bool:
        """The node's cache (the workers' spec, the resource monitor...), then the workers."""
        end_leftovers(self.location, self.spec.node_index)  # of a run of this node killed -9
        self.cache_dir = tempfile.mkdtemp(prefix=node_temp_prefix(self.spec.node_index))
        self.cache = NodeCache(self.spec, self.cache_dir, self.logs,
                               [slot.name for slot in self.pool.slots], self.pool.pids)
        for slot in self.pool.slots[:count]:
            self._start(slot)
        return True

    def _launch(self, name: str) -> WorkerProcess:
        return self.running_cache.launcher.launch(name)

    def _start(self, slot: Slot) -> None:
        process = self.pool.start(slot)
        self.logs.debug(slot.name, f"started worker pid={process.pid}")

    @property
    def running_cache(self) -> NodeCache:
        assert self.cache is not None, "made by _start_workers() before any worker starts"
        return self.cache

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._check_thresholds()
            if self.stopping():
                self._stop_early()
            self._hand_out_work()
            if self.pool.all_gone() and not self.queue.waiting_for_plan():
                return
            self._report_progress()
            poll = POLL if self.sharing is None else self.sharing.renew(POLL)  # not in run()
            woken = self.pool.wait(self.pool.next_deadline_in(poll), [self._wakeup.reader])
            self._handle_messages(woken)
            self._handle_exits_and_deadlines(woken.ended)
            self.running_cache.tracker.sample()

    def _check_thresholds(self) -> None:
        if self.stop_reason is None:
            self.stop_reason = self.outcomes.broken_threshold(self.config, self.logs.master)

    def stopping(self) -> bool:
        return self.aborted or self.stop_reason is not None

    def _stop_early(self) -> None:
        """No new mini-batch; running ones are killed; idle workers are told to stop (next)."""
        for slot in self.pool.in_state(BUSY, STARTING):
            if slot.task is not None:
                self.logs.sys_line(slot, slot.task, "stopped", self.pool.elapsed(slot), None)
            self.pool.kill(slot)  # what it ran is not recorded: a later run of the job runs it

    def _hand_out_work(self) -> None:
        """Idle workers get a mini-batch (or are stopped), busy ones their next, and empty
        slots a new worker while there is work for it."""
        for slot in self.pool.slots:
            if slot.state == IDLE:
                self._dispatch(slot)
            if slot.state == BUSY and slot.queued is None:
                self._send_ahead(slot)
            elif (slot.state == GONE and (self.queue.has_work() or self.queue.waiting_for_plan())
                  and self.pool.may_start(self.queue.known(len(self.indices)))):
                self._start(slot)

    def _dispatch(self, slot: Slot) -> None:
        task = self.queue.next()
        if task is not None:
            self._send(slot, task)
        elif not self.queue.waiting_for_plan():  # else idle until the planner wakes the loop
            self.pool.stop(slot, STOP_GRACE if self.stopping() else SHUTDOWN_GRACE)

    def _send_ahead(self, slot: Slot) -> None:
        """Give a busy worker its next mini-batch now, so it never waits for the node."""
        task = self.queue.next(ahead=True)
        if task is not None:
            self._send(slot, task)

    def _send(self, slot: Slot, task: Task) -> None:
        try:
            items = self.running_cache.staging.local_items(task)
        except StoreUnavailable:
            raise  # down for longer than we wait: the job stops, and a later run resumes
        except Exception as exc:  # the store refused the files: this try fails, not the node
            self.events.try_failed(slot.name, task, f"fetching the input files failed: "
                             f"{type(exc).__name__}: {exc}", pid=None)
            return
        if not self.pool.send(slot, task, task.message(items)):  # it died: its exit is seen next
            self.queue.put_back(task)
            return
        assert slot.process is not None
        self.logs.debug(slot.name, f"sent mini_batch={task.batch.index} try={task.try_number} "
                                   f"to pid={slot.process.pid}")

    def _report_progress(self) -> None:
        if self.logs.tick(self.outcomes) and self.on_tick is not None:
            self.on_tick()

    def _handle_messages(self, woken: Woken) -> None:
        if self._wakeup.reader in woken.others:
            self._wakeup.clear()
        for slot in woken.readable:
            for message in self.pool.receive(slot):
                if message is CLOSED:
                    self.events.on_exit(slot)
                else:
                    self.events.on_message(slot, message)

    def _handle_exits_and_deadlines(self, ended: set[str]) -> None:
        for slot in self.pool.slots:
            if slot.process is None:
                continue
            if self.pool.has_exited(slot, ended):
                self.events.on_exit(slot)
            elif self.pool.overdue(slot):
                self.events.on_deadline(slot)
