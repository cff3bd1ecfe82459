"""What a node does when a worker speaks (ready, a mini-batch done or failed, init() failed,
stopped), misses a deadline, or dies: the slot's transition in the pool, the try's lines in
the logs, a retry or a final outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import logs
from ..results import OK, MiniBatchRecord
from .messages import InitFailed, MiniBatchDone, MiniBatchFailed, Ready, Stopped
from .pool import Killed, Slot, SlotState
from .work_queue import Task

if TYPE_CHECKING:
    from .node import Node

STARTING, BUSY = SlotState.STARTING, SlotState.BUSY


class WorkerEvents:
    """The node's answers to its workers; the node's loop hands every event here."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def on_message(self, slot: Slot, message: Any) -> None:
        if isinstance(message, Ready):
            self.node.pool.ready(slot)
        elif isinstance(message, MiniBatchDone):
            self._on_done(slot, message)
        elif isinstance(message, MiniBatchFailed):
            self._on_failed(slot, message)
        elif isinstance(message, InitFailed):
            self._init_failed(slot, message.error)
        elif isinstance(message, Stopped):
            self.node.pool.kill(slot)

    def _on_done(self, slot: Slot, message: MiniBatchDone) -> None:
        task, process = slot.task, slot.process
        assert task is not None and task.batch.index == message.index and process is not None
        record = MiniBatchRecord(message.index, OK, message.total, message.succeeded,
                                 message.failed, task.try_number)
        if self.node.location.is_remote:  # the worker wrote it to staging: now it counts
            self.node.running_cache.staging.upload_record(record.index, message.written)
        self.node.logs.mini_batch_done(slot, process.pid, task, record, message)
        self.node.running_cache.staging.release(task)
        self.node.outcomes.finished(record)
        self.node.pool.finished(slot)

    def _on_failed(self, slot: Slot, message: MiniBatchFailed) -> None:
        task, process = slot.task, slot.process
        assert task is not None and task.batch.index == message.index and process is not None
        self.node.logs.sys_line(slot, task, "failed", message.run_seconds, None)
        self.node.pool.finished(slot)
        if message.total is not None:
            task.size = message.total
        self.try_failed(slot.name, task, message.error, pid=process.pid, logged=True,
                         retryable=message.retryable)


    def on_deadline(self, slot: Slot) -> None:
        if slot.state == STARTING:
            killed = self.node.pool.timed_out(slot)
            self._init_lost(slot, killed, f"init() timed out after {self.node.config.effective_init_timeout:g} s "
                            "(init_timeout); the worker was killed")
        elif slot.state == BUSY:
            task, process = slot.task, slot.process
            assert task is not None and process is not None
            error = (f"run() timed out after {self.node.config.run_invocation_timeout} s "
                     "(run_invocation_timeout); the worker and its child processes were killed")
            self.node.logs.error_event(slot.name, process.pid, task, error,
                                  "the stack of run() when it was stopped follows, if it could be taken:")
            self._try_lost(slot, self.node.pool.timed_out(slot), "timeout", error, logged=True)
        else:  # shutdown() overstayed, or a stop was not heeded
            if slot.state == SlotState.STOPPING and slot.process is not None:
                self.node.logs.shutdown_killed(slot.name, self.node.pool.elapsed(slot), slot.process.pid)
            self.node.pool.kill(slot)

    def on_exit(self, slot: Slot) -> None:
        killed, how = self.node.pool.died(slot)
        if killed.state == BUSY:
            self._try_lost(slot, killed, "died", f"the worker process died during run() ({how})")
        elif killed.state == STARTING:
            self._init_lost(slot, killed, f"the worker process died before init() finished ({how}); "
                            f"see {logs.user_stderr(self.node.spec.ip, slot.name)}")

    def _try_lost(self, slot: Slot, killed: Killed, status: str, error: str,
                  logged: bool = False) -> None:
        """The worker that ran a try is gone: the try failed, the one sent ahead goes back."""
        task, pid = killed.task, killed.process.pid
        assert task is not None
        self.node.logs.sys_line(slot, task, status, self.node.pool.elapsed(slot), None, pid=pid)
        self.node.queue.put_back(killed.queued)
        self.try_failed(slot.name, task, error, pid=pid, logged=logged)

    def _init_lost(self, slot: Slot, killed: Killed, error: str) -> None:
        self.node.logs.init_error(slot.name, killed.process.pid, error)
        self._init_failed(slot, error)

    def _init_failed(self, slot: Slot, error: str) -> None:
        if self.node.pool.init_failed(slot) and self.node.stop_reason is None:
            self.node.stop_reason = (f"init() failed {self.node.pool.init_failures} times (limit 3 x "
                                f"process_count_per_node = {self.node.pool.init_budget}); last: {error}")


    def try_failed(self, process: str, task: Task, error: str, pid: int | None,
                    logged: bool = False, details: str = "", retryable: bool = True) -> None:
        """A try failed; ``logged`` when the worker already wrote the event with its traceback.

        Not ``retryable`` (the input itself is bad): no more tries, the mini-batch fails now.
        """
        if not logged:
            self.node.logs.error_event(process, pid, task, error, details)
        if retryable and self.node.queue.retry(task):
            return
        if self.node.stopping():
            return  # not recorded: a later run of the job tries it again
        self.node.running_cache.staging.release(task)
        self.node.outcomes.failed(task.batch.index, task.count_items(self.node.spec.datasets), task.try_number)
