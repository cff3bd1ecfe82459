"""What a node runs next: retries, the plan, the planner's feed, and stopping."""

from __future__ import annotations

from airflow_parallel_run.engine.feed import PlanFeed
from airflow_parallel_run.engine.work_queue import Task, WorkQueue
from airflow_parallel_run.plan import MiniBatch


def batch(index: int) -> MiniBatch:
    return MiniBatch(index, "data", [f"/in/{index}.txt"])


class Stop:
    def __init__(self) -> None:
        self.now = False

    def __call__(self) -> bool:
        return self.now


def queue_of(*indices: int, run_max_try: int = 3, stopping: Stop | None = None) -> WorkQueue:
    queue = WorkQueue(run_max_try, stopping or Stop())
    queue.read_plan(iter([batch(i) for i in indices]))
    return queue


def handed_out(queue: WorkQueue) -> list[tuple[int, int]]:
    out = []
    while (task := queue.next()) is not None:
        out.append((task.batch.index, task.try_number))
    return out


def test_the_plan_is_handed_out_in_order_then_nothing():
    queue = queue_of(0, 1, 2)
    assert handed_out(queue) == [(0, 1), (1, 1), (2, 1)]
    assert queue.next() is None and not queue.has_work()


def test_retries_come_before_new_plan_items():
    queue = queue_of(0, 1, 2)
    first = queue.next()
    assert queue.retry(first)
    assert handed_out(queue) == [(0, 2), (1, 1), (2, 1)]


def test_a_failed_task_is_retried_until_run_max_try():
    queue = queue_of(0, run_max_try=2)
    first = queue.next()
    assert queue.retry(first)
    second = queue.next()
    assert second.try_number == 2
    assert not queue.retry(second)
    assert queue.next() is None


def test_a_retry_keeps_the_files_already_fetched():
    queue = queue_of(0)
    task = queue.next()
    task.local_items, task.fetched, task.size = ["/cache/mb0/0/0.txt"], True, 1
    queue.retry(task)
    again = queue.next()
    assert (again.local_items, again.fetched, again.size) == (["/cache/mb0/0/0.txt"], True, 1)


def test_a_task_put_back_is_next_in_line_with_the_same_try():
    queue = queue_of(0, 1)
    task = queue.next()
    queue.put_back(task)
    assert queue.next() is task
    queue.put_back(None)  # nothing was sent ahead
    assert handed_out(queue) == [(1, 1)]


def test_nothing_is_handed_out_or_retried_once_the_node_stops():
    stop = Stop()
    queue = queue_of(0, 1, stopping=stop)
    task = queue.next()
    stop.now = True
    assert not queue.retry(task)
    assert queue.next() is None and not queue.has_work()


def test_the_feeds_pending_means_wait_not_done():
    feed = PlanFeed()
    queue = WorkQueue(3, Stop())
    queue.read_feed(feed)
    assert queue.next() is None
    assert queue.waiting_for_plan()
    feed.put(batch(0))
    assert handed_out(queue) == [(0, 1)]
    assert queue.waiting_for_plan()


def test_a_closed_feed_is_done_once_taken():
    feed = PlanFeed()
    queue = WorkQueue(3, Stop())
    queue.read_feed(feed)
    feed.put(batch(0))
    feed.close()
    assert handed_out(queue) == [(0, 1)]
    assert not queue.waiting_for_plan()


def test_a_feed_over_its_limit_hands_out_the_rest_from_the_plan_once_complete():
    feed = PlanFeed(limit=1)
    queue = WorkQueue(3, Stop())
    queue.read_feed(feed)
    for i in range(3):
        feed.put(batch(i))
    assert handed_out(queue) == [(0, 1)]
    assert queue.waiting_for_plan()
    feed.close(lambda first: iter([batch(i) for i in range(first, 3)]))
    assert handed_out(queue) == [(1, 1), (2, 1)]


def test_a_plan_read_from_files_never_waits_for_the_planner():
    assert not queue_of(0).waiting_for_plan()


def test_a_stopping_node_waits_for_no_planner():
    stop = Stop()
    queue = WorkQueue(3, stop)
    queue.read_feed(PlanFeed())
    stop.now = True
    assert not queue.waiting_for_plan()


def test_only_local_files_not_fetched_have_their_versions_recorded():
    local = Task(batch(0))
    fetched = Task(batch(1), fetched=True)
    piece = Task(MiniBatch(2, "table", [], {"path": "/in/t.csv", "rows": 5}))
    assert local.message(["/in/0.txt"]).versions
    assert not fetched.message(["/cache/1.txt"]).versions
    assert not piece.message([]).versions


def test_the_size_of_a_file_mini_batch_is_its_file_count():
    assert Task(MiniBatch(0, "data", ["/a", "/b"])).count_items({}) == 2
