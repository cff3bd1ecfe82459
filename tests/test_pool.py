"""The worker pool's slots and their transitions, with a fake clock and fake worker processes."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from airflow_parallel_run.engine.messages import MiniBatchDone, Ready, RunMiniBatch, Stop
from airflow_parallel_run.engine.pool import CLOSED, SlotState, WorkerPool
from airflow_parallel_run.engine.work_queue import Task, WorkQueue
from airflow_parallel_run.plan import MiniBatch

INIT_TIMEOUT = 60.0
RUN_TIMEOUT = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.inbox: deque[Any] = deque()
        self.broken = False  # the worker is gone: sending fails, reading ends
        self.closed = False

    def send(self, obj: Any) -> None:
        if self.broken:
            raise OSError("broken pipe")
        self.sent.append(obj)

    def recv(self) -> Any:
        if not self.inbox:
            raise EOFError
        return self.inbox.popleft()

    def poll(self) -> bool:
        return bool(self.inbox) or self.broken


class FakeWorker:
    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.pid = pid
        self.conn = FakeConnection()
        self.pidfd: int | None = None
        self.ended = False
        self.killed = False
        self.stacks_taken = 0

    def waitables(self) -> list[Any]:
        return []

    def exited(self) -> bool:
        return self.ended or self.killed

    def wait(self, timeout: float) -> None:
        self.ended = True

    def describe_exit(self) -> str:
        return "killed by signal SIGSEGV"

    def dump_stack(self) -> None:
        self.stacks_taken += 1

    def kill_tree(self) -> None:
        self.killed = True


class Factory:
    def __init__(self) -> None:
        self.started: list[FakeWorker] = []

    def __call__(self, name: str) -> FakeWorker:
        worker = FakeWorker(name, pid=100 + len(self.started))
        self.started.append(worker)
        return worker


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def factory() -> Factory:
    return Factory()


@pytest.fixture
def pool(clock: FakeClock, factory: Factory) -> WorkerPool:
    return WorkerPool(["w0", "w1"], factory, INIT_TIMEOUT, RUN_TIMEOUT, init_budget=3,
                      clock=clock)


def task(index: int, try_number: int = 1) -> Task:
    return Task(MiniBatch(index, "data", [f"/in/{index}.txt"]), try_number)


def message(t: Task) -> RunMiniBatch:
    return t.message([f"/in/{t.batch.index}.txt"])


def idle_slot(pool: WorkerPool):
    slot = pool.slots[0]
    pool.start(slot)
    pool.ready(slot)
    return slot


def busy_slot(pool: WorkerPool, t: Task):
    slot = idle_slot(pool)
    assert pool.send(slot, t, message(t))
    return slot


def test_a_started_worker_is_starting_with_the_init_deadline(pool, clock, factory):
    slot = pool.slots[0]
    worker = pool.start(slot)
    assert worker is factory.started[0] and slot.process is worker
    assert slot.state is SlotState.STARTING
    assert slot.deadline == clock.now + INIT_TIMEOUT


def test_a_ready_worker_is_idle_without_deadline(pool):
    slot = idle_slot(pool)
    assert slot.state is SlotState.IDLE
    assert slot.deadline == float("inf")


def test_a_task_sent_to_an_idle_worker_runs_with_the_run_deadline(pool, clock):
    t = task(1)
    slot = busy_slot(pool, t)
    assert slot.state is SlotState.BUSY and slot.task is t
    assert slot.deadline == clock.now + RUN_TIMEOUT
    assert slot.process.conn.sent == [message(t)]


def test_a_task_sent_to_a_busy_worker_waits_as_its_next(pool):
    running, ahead = task(1), task(2)
    slot = busy_slot(pool, running)
    assert pool.send(slot, ahead, message(ahead))
    assert slot.task is running and slot.queued is ahead


def test_a_finished_task_frees_the_slot(pool):
    t = task(1)
    slot = busy_slot(pool, t)
    assert pool.finished(slot) is t
    assert slot.state is SlotState.IDLE and slot.task is None
    assert slot.deadline == float("inf")


def test_the_task_sent_ahead_runs_when_the_running_one_finishes(pool, clock):
    running, ahead = task(1), task(2)
    slot = busy_slot(pool, running)
    pool.send(slot, ahead, message(ahead))
    clock.advance(7)
    assert pool.finished(slot) is running
    assert slot.state is SlotState.BUSY and slot.task is ahead and slot.queued is None
    assert slot.since == clock.now and slot.deadline == clock.now + RUN_TIMEOUT


def test_sending_to_a_worker_that_is_gone_fails_and_changes_nothing(pool):
    slot = idle_slot(pool)
    slot.process.conn.broken = True
    assert not pool.send(slot, task(1), message(task(1)))
    assert slot.state is SlotState.IDLE and slot.task is None


def test_a_busy_worker_is_overdue_only_past_its_run_deadline(pool, clock):
    slot = busy_slot(pool, task(1))
    clock.advance(RUN_TIMEOUT - 0.1)
    assert not pool.overdue(slot)
    clock.advance(0.1)
    assert pool.overdue(slot)


def test_a_worker_that_times_out_is_killed_after_its_stack_is_taken_and_its_slot_restarts(
        pool, factory):
    running, ahead = task(1), task(2)
    slot = busy_slot(pool, running)
    pool.send(slot, ahead, message(ahead))
    worker = slot.process
    killed = pool.timed_out(slot)
    assert worker.stacks_taken == 1 and worker.killed
    assert killed.process is worker and killed.state is SlotState.BUSY
    assert killed.task is running and killed.queued is ahead
    assert slot.state is SlotState.GONE and slot.process is None
    assert slot.task is None and slot.queued is None
    fresh = pool.start(slot)
    assert fresh is not worker and fresh is factory.started[-1]
    assert slot.state is SlotState.STARTING and slot.name == "w0"


def test_a_worker_that_times_out_in_init_is_killed_without_a_stack(pool):
    slot = pool.slots[0]
    worker = pool.start(slot)
    killed = pool.timed_out(slot)
    assert worker.killed and worker.stacks_taken == 0
    assert killed.state is SlotState.STARTING and slot.state is SlotState.GONE


def test_a_died_worker_is_cleared_and_says_how_it_ended(pool):
    t = task(1)
    slot = busy_slot(pool, t)
    worker = slot.process
    worker.ended = True
    killed, how = pool.died(slot)
    assert how == "killed by signal SIGSEGV"
    assert worker.killed  # what it started is killed too
    assert killed.task is t and slot.state is SlotState.GONE and slot.process is None


def test_a_died_workers_task_is_retried_until_run_max_try(pool):
    queue = WorkQueue(run_max_try=3, stopping=lambda: False)
    queue.read_plan(iter([MiniBatch(1, "data", ["/in/1.txt"])]))
    tries = []
    while (t := queue.next()) is not None:
        slot = pool.slots[0]
        pool.start(slot)
        pool.ready(slot)
        pool.send(slot, t, message(t))
        killed, _ = pool.died(slot)
        tries.append(killed.task.try_number)
        queue.retry(killed.task)
    assert tries == [1, 2, 3]


def test_stop_tells_the_worker_and_gives_it_the_grace_period(pool, clock):
    slot = idle_slot(pool)
    pool.stop(slot, grace=5.0)
    assert slot.state is SlotState.STOPPING
    assert isinstance(slot.process.conn.sent[-1], Stop)
    assert slot.deadline == clock.now + 5.0


def test_stop_of_a_worker_that_is_gone_still_waits_for_its_exit(pool):
    slot = idle_slot(pool)
    slot.process.conn.broken = True
    pool.stop(slot, grace=5.0)
    assert slot.state is SlotState.STOPPING and slot.process is not None


def test_kill_all_kills_every_process(pool, factory):
    pool.start(pool.slots[0])
    pool.start(pool.slots[1])
    pool.kill_all()
    assert [w.killed for w in factory.started] == [True, True]
    assert pool.all_gone()


def test_starts_stop_once_init_failures_and_starting_workers_reach_the_budget(pool):
    first, second = pool.slots
    for _ in range(2):
        pool.start(first)
        assert not pool.init_failed(first)
    assert first.state is SlotState.GONE and pool.may_start()
    pool.start(second)  # 2 failures and 1 init() running: the budget of 3
    assert not pool.may_start()
    assert pool.init_failed(second)  # the third failure: the pool gives up
    assert pool.init_failures == 3 and pool.all_gone()


def test_receive_yields_the_messages_then_closed_when_the_worker_hangs_up(pool):
    slot = pool.slots[0]
    worker = pool.start(slot)
    worker.conn.inbox.extend([Ready(worker.pid), MiniBatchDone(1, 2, 2, 0, 0.1)])
    worker.conn.broken = True
    received = list(pool.receive(slot))
    assert received == [Ready(worker.pid), MiniBatchDone(1, 2, 2, 0, 0.1), CLOSED]
    assert worker.ended  # waited for


def test_receive_stops_once_the_worker_left_its_slot(pool):
    slot = pool.slots[0]
    worker = pool.start(slot)
    worker.conn.inbox.extend([Ready(worker.pid), Ready(worker.pid)])
    received = []
    for m in pool.receive(slot):
        received.append(m)
        pool.kill(slot)
    assert received == [Ready(worker.pid)]


def test_an_exit_counts_only_once_every_message_is_read(pool):
    slot = pool.slots[0]
    worker = pool.start(slot)
    worker.ended = True
    worker.conn.inbox.append(Ready(worker.pid))
    assert not pool.has_exited(slot, ended=set())
    worker.conn.inbox.clear()
    assert pool.has_exited(slot, ended=set())


def test_the_wait_is_no_longer_than_the_nearest_deadline(pool, clock):
    busy_slot(pool, task(1))
    clock.advance(RUN_TIMEOUT - 0.25)
    assert pool.next_deadline_in(1.0) == pytest.approx(0.25)
    clock.advance(1.0)
    assert pool.next_deadline_in(1.0) == 0.0
