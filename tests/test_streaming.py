"""A fresh local job runs mini-batches while the planner is still listing its input."""

from __future__ import annotations

import json
import time

import pytest
from support import make_files, output_lines, pid_alive

from airflow_parallel_run import FileDataset
from airflow_parallel_run.engine.feed import Pending, PlanFeed
from airflow_parallel_run.errors import InputError
from airflow_parallel_run.plan import MiniBatch
from airflow_parallel_run.results import MiniBatchRecord, RecordLog
from airflow_parallel_run.storage import LocalLocation

MARK = """
import json, os, time
def run(mini_batch):
    name = os.path.basename(mini_batch[0])
    with open(os.path.join(MARKS, f"ran-{name}"), "w") as f:
        json.dump({"at": time.time(), "pid": os.getpid()}, f)
    return [f"{os.path.basename(p)}: {open(p).read().strip()}" for p in mini_batch]
"""

LISTING_PAUSE = 0.4


class SlowListing(FileDataset):
    """Files listed one at a time with a pause before each but the first, as a slow disk
    or a huge folder would; ``fail_after`` chunks, the listing fails."""

    listed_at: float = 0.0
    fail_after: int | None = None

    def iter_chunks(self, stats: bool = True, note=lambda text: None):
        for n, chunk in enumerate(super().iter_chunks(stats, note)):
            for position, path in enumerate(chunk):
                if n or position:
                    time.sleep(LISTING_PAUSE)
                if self.fail_after is not None and position == self.fail_after:
                    raise InputError("input 'in': the disk went away while listing")
                yield [path]
        SlowListing.listed_at = time.time()


def ran(runner) -> list[dict]:
    return [json.loads(p.read_text()) for p in runner.marks_named("ran-")]


def test_mini_batches_run_while_the_planner_still_lists(runner):
    make_files(runner.inputs, 8)
    dataset = SlowListing.from_files(str(runner.inputs))

    result = runner.run(runner.script(MARK), inputs=[dataset], mini_batch_size=1,
                        process_count_per_node=2)

    assert result.success, result.reason
    assert output_lines(runner.output) == [f"f{i:04d}.txt: item {i}" for i in range(8)]
    first_run = min(mark["at"] for mark in ran(runner))
    # the listing took 7 pauses; the first mini-batch ran long before it ended
    assert first_run < SlowListing.listed_at - 3 * LISTING_PAUSE
    assert result.mini_batch_count == 8 and result.totals.succeeded_items == 8


def test_a_listing_that_fails_midway_stops_the_workers_and_keeps_no_job(runner):
    make_files(runner.inputs, 8)
    dataset = SlowListing.from_files(str(runner.inputs))
    dataset.fail_after = 4

    with pytest.raises(InputError, match="the disk went away"):
        runner.run(runner.script(MARK), inputs=[dataset], mini_batch_size=1,
                   process_count_per_node=2)

    marks = ran(runner)
    assert marks, "the mini-batches planned before the failure ran"
    assert not any(pid_alive(mark["pid"]) for mark in marks)
    # no half-planned job is left to be resumed: no state, no logs, no output file
    assert not (runner.output / ".parallel_run").exists()
    assert not (runner.output / "logs").exists()
    assert not (runner.output / "parallel_run_step.txt").exists()


def test_records_without_a_job_are_not_taken_for_results(runner):
    # what a run killed while still planning leaves: records, but no job.json
    make_files(runner.inputs, 4)
    location = LocalLocation(str(runner.output))
    RecordLog(location, "a-killed-worker").write(MiniBatchRecord(0, "ok", 1, 1, 0, 1),
                                                 b"stale line of another input\n")

    result = runner.run(runner.script(MARK), mini_batch_size=1)

    assert result.success, result.reason
    assert output_lines(runner.output) == [f"f{i:04d}.txt: item {i}" for i in range(4)]
    assert len(ran(runner)) == 4


COUNT = """
import os
def run(mini_batch):
    with open(os.path.join(MARKS, "runs"), "a") as f:
        f.write(os.path.basename(mini_batch[0]) + "\\n")
    return [f"{os.path.basename(p)}: {open(p).read().strip()}" for p in mini_batch]
"""


def test_a_planner_far_ahead_leaves_the_rest_to_the_plan_files(runner, monkeypatch):
    # the feed holds 3 mini-batches at most; 40 are planned long before the workers start
    monkeypatch.setattr("airflow_parallel_run.engine.feed.FEED_LIMIT", 3)
    make_files(runner.inputs, 40)

    result = runner.run(runner.script(COUNT), mini_batch_size=1, process_count_per_node=2)

    assert result.success, result.reason
    assert output_lines(runner.output) == [f"f{i:04d}.txt: item {i}" for i in range(40)]
    runs = (runner.marks / "runs").read_text().split()
    assert sorted(runs) == [f"f{i:04d}.txt" for i in range(40)]  # each exactly once


def batch(index: int) -> MiniBatch:
    return MiniBatch(index, "input", [f"/in/{index}"], None)


def test_the_feed_hands_out_in_order_then_pending_then_the_rest_then_none():
    feed = PlanFeed(limit=2)
    assert isinstance(feed.take(), Pending)
    for i in range(5):
        feed.put(batch(i))  # 0 and 1 are held; 2, 3 and 4 are left to the plan
    assert [feed.take().index, feed.take().index] == [0, 1]
    assert isinstance(feed.take(), Pending)  # the plan is not complete yet
    feed.close(lambda first: iter(batch(i) for i in range(first, 5)))
    assert [feed.take().index for _ in range(3)] == [2, 3, 4]
    assert feed.take() is None


def test_a_feed_closed_after_a_failed_planning_hands_out_nothing_more():
    feed = PlanFeed(limit=1)
    feed.put(batch(0))
    feed.put(batch(1))  # spilled
    feed.close()
    assert feed.take().index == 0
    assert feed.take() is None


def test_a_put_wakes_a_node_that_found_the_feed_empty():
    import os

    read, write = os.pipe()
    os.set_blocking(read, False)
    feed = PlanFeed()
    feed.wake_through(write)
    feed.put(batch(0))  # nobody waits: no wake-up
    with pytest.raises(BlockingIOError):
        os.read(read, 8)
    feed.take()
    assert isinstance(feed.take(), Pending)
    feed.put(batch(1))
    assert os.read(read, 8) == b"f"
    os.close(read)
    os.close(write)
