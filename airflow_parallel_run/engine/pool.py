"""The node's worker pool: a fixed set of slots, each holding at most one worker process.

A slot keeps its name (and so its log files) while the process in it is replaced. Its life::

    GONE --start--> STARTING --ready--> IDLE --send--> BUSY --finished--> IDLE, or BUSY with
      ^                                  |                                  the task sent ahead
      |                                  +--stop--> STOPPING
      |                                                 |
      +-- kill, from any state: after a timeout, a death, a failed init(), a stop early,
          or once shutdown() is done

The pool decides nothing about work: it records what was sent where, and "kill the process
and clear the slot" happens in one place (:meth:`WorkerPool.kill`), which hands back what
the slot held so that the node can retry or record it. Processes come from a factory and
time from a clock, both given, so the pool is tested without a subprocess.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Protocol

from .messages import Stop
from .work_queue import Task

INFINITY = float("inf")


class Connection(Protocol):
    """The worker's end of the socket pair, as the pool uses it."""

    def send(self, obj: Any) -> None: ...
    def recv(self) -> Any: ...
    def poll(self) -> bool: ...


class Worker(Protocol):
    """What the pool needs of a worker process (``processes.WorkerProcess``, or a fake)."""

    @property
    def pid(self) -> int: ...
    @property
    def conn(self) -> Connection: ...
    @property
    def pidfd(self) -> int | None: ...

    def waitables(self) -> list[Any]: ...
    def exited(self) -> bool: ...
    def wait(self, timeout: float) -> None: ...
    def describe_exit(self) -> str: ...
    def dump_stack(self) -> None: ...
    def kill_tree(self) -> None: ...


class SlotState(enum.Enum):
    STARTING = "starting"  # init() runs
    IDLE = "idle"  # init() returned, nothing to run
    BUSY = "busy"  # run() of `task` runs
    STOPPING = "stopping"  # told to stop: shutdown() runs
    GONE = "gone"  # no process


@dataclass
class Slot:
    """A place in the pool; the process in it is replaced when it dies, the name stays."""

    name: str
    process: Worker | None = None
    state: SlotState = SlotState.GONE
    task: Task | None = None  # running in the worker
    queued: Task | None = None  # sent ahead: the worker starts it as soon as `task` is done
    since: float = 0.0  # when the current state began
    deadline: float = INFINITY


@dataclass
class Killed:
    """What a slot held when its process was killed: the node decides what becomes of it."""

    process: Worker
    state: SlotState
    task: Task | None
    queued: Task | None  # sent ahead, never started


class Closed:
    """Yielded by :meth:`WorkerPool.receive` when the worker closed its end: it is exiting."""


CLOSED = Closed()


@dataclass
class Woken:
    """What :meth:`WorkerPool.wait` saw: slots with messages, slots whose process ended."""

    readable: list[Slot]
    ended: set[str]
    others: list[Any]  # the extra waitables that are ready


class WorkerPool:
    def __init__(self, names: list[str], factory: Callable[[str], Worker],
                 init_timeout: float, run_timeout: float, init_budget: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``init_budget``: init() failures (all workers together) before the pool gives up."""
        self.slots = [Slot(name) for name in names]
        self.factory = factory
        self.init_timeout = init_timeout
        self.run_timeout = run_timeout
        self.init_budget = init_budget
        self.init_failures = 0
        self.clock = clock

    # -- queries ------------------------------------------------------------------------------

    def in_state(self, *states: SlotState) -> list[Slot]:
        return [slot for slot in self.slots if slot.state in states]

    def count(self, state: SlotState) -> int:
        return sum(slot.state == state for slot in self.slots)

    def all_gone(self) -> bool:
        return all(slot.state == SlotState.GONE for slot in self.slots)

    def pids(self) -> dict[str, int]:
        return {s.name: p.pid for s in self.slots if (p := s.process) is not None}

    def elapsed(self, slot: Slot) -> float:
        return self.clock() - slot.since

    def may_start(self, mini_batches: int | None = None) -> bool:
        """Never more init() attempts than the budget allows, even with several in flight,
        nor more workers than ``mini_batches`` to give out."""
        if mini_batches is not None and len(self.slots) - self.count(SlotState.GONE) >= mini_batches:
            return False
        return self.init_failures + self.count(SlotState.STARTING) < self.init_budget

    # -- transitions --------------------------------------------------------------------------

    def start(self, slot: Slot) -> Worker:
        """A new worker in an empty slot (at first, or in place of one that is gone)."""
        assert slot.process is None
        slot.process = self.factory(slot.name)
        slot.task = None
        self._enter(slot, SlotState.STARTING, self.init_timeout)
        return slot.process

    def ready(self, slot: Slot) -> None:
        """init() returned."""
        self._enter(slot, SlotState.IDLE, None)

    def send(self, slot: Slot, task: Task, message: Any) -> bool:
        """Send ``task`` to an idle worker (it runs now) or a busy one (it runs next).

        False when the worker is gone already: its exit is seen on the next wait.
        """
        assert slot.process is not None and slot.state in (SlotState.IDLE, SlotState.BUSY)
        try:
            slot.process.conn.send(message)
        except OSError:
            return False
        if slot.state == SlotState.IDLE:
            self._run(slot, task)
        else:
            slot.queued = task
        return True

    def finished(self, slot: Slot) -> Task:
        """The running task is over: the one sent ahead (if any) runs now."""
        done, queued = slot.task, slot.queued
        assert done is not None
        slot.queued = None
        if queued is not None:
            self._run(slot, queued)
        else:
            slot.task = None
            self._enter(slot, SlotState.IDLE, None)
        return done

    def init_failed(self, slot: Slot) -> bool:
        """init() failed, timed out or died: the slot is emptied. True once over budget."""
        if slot.process is not None:
            self.kill(slot)
        self.init_failures += 1
        return self.init_failures >= self.init_budget

    def stop(self, slot: Slot, grace: float) -> None:
        """No more work for this worker: it calls shutdown() and gets ``grace`` seconds."""
        assert slot.process is not None
        try:
            slot.process.conn.send(Stop())
        except OSError:  # already gone: its exit is seen next
            pass
        self._enter(slot, SlotState.STOPPING, grace)

    def timed_out(self, slot: Slot) -> Killed:
        """Past its deadline: a busy worker's stack is asked for first, then it is killed."""
        assert slot.process is not None
        if slot.state == SlotState.BUSY:
            slot.process.dump_stack()
        return self.kill(slot)

    def died(self, slot: Slot) -> tuple[Killed, str]:
        """The process ended on its own: its leftovers are killed; also says how it ended."""
        assert slot.process is not None
        how = slot.process.describe_exit()
        return self.kill(slot), how

    def kill(self, slot: Slot) -> Killed:
        """Kill the process with everything it started, and empty the slot."""
        process = slot.process
        assert process is not None
        killed = Killed(process, slot.state, slot.task, slot.queued)
        process.kill_tree()
        slot.process = None
        slot.task = slot.queued = None
        slot.state = SlotState.GONE
        slot.deadline = INFINITY
        return killed

    def kill_all(self) -> None:
        for slot in self.slots:
            if slot.process is not None:
                self.kill(slot)

    # -- waiting ------------------------------------------------------------------------------

    def next_deadline_in(self, longest: float) -> float:
        now = self.clock()
        return min([longest] + [max(0.0, s.deadline - now) for s in self.slots])

    def wait(self, timeout: float, others: list[Any]) -> Woken:
        """Until a worker sends something or ends, one of ``others`` is ready, or ``timeout``."""
        owners: dict[Any, Slot] = {}
        for slot in self.slots:
            if slot.process is not None:
                for waitable in slot.process.waitables():
                    owners[waitable] = slot
        woken = Woken([], set(), [])
        for ready in wait(others + list(owners), timeout):
            owner = owners.get(ready)
            if owner is None:
                woken.others.append(ready)
            elif owner.process is not None and ready is owner.process.conn:
                woken.readable.append(owner)
            else:  # its pidfd: the process ended
                woken.ended.add(owner.name)
        return woken

    def receive(self, slot: Slot) -> Iterator[Any]:
        """The messages the slot's worker has sent, then CLOSED if it closed its end.

        Stops as soon as the worker is no longer in the slot (a message may have ended it).
        """
        process = slot.process
        assert process is not None
        while slot.process is process and process.conn.poll():
            try:
                message = process.conn.recv()
            except (EOFError, OSError):  # it is dying: what it left is taken as its exit
                process.wait(timeout=5)
                yield CLOSED
                return
            yield message

    def has_exited(self, slot: Slot, ended: set[str]) -> bool:
        """The process ended and every message it sent has been read."""
        process = slot.process
        assert process is not None
        return ((process.pidfd is None or slot.name in ended)
                and process.exited() and not process.conn.poll())

    def overdue(self, slot: Slot) -> bool:
        return self.clock() >= slot.deadline

    # -- internals ----------------------------------------------------------------------------

    def _run(self, slot: Slot, task: Task) -> None:
        slot.task = task
        self._enter(slot, SlotState.BUSY, self.run_timeout)

    def _enter(self, slot: Slot, state: SlotState, timeout: float | None) -> None:
        slot.state = state
        slot.since = self.clock()
        slot.deadline = INFINITY if timeout is None else slot.since + timeout
