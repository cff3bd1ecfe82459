"""error_threshold, allowed_failed_count and allowed_failed_percent at their boundaries."""

from __future__ import annotations

import pytest
from support import make_files

# 10 mini-batches of 2 files; f0003 is dropped from its result (1 failed item), and the
# mini-batches starting with f0010 and f0014 raise (2 failed mini-batches, 4 failed items).
SCRIPT = """
import os
def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if names[0] in ("f0010.txt", "f0014.txt"):
        raise ValueError("bad batch " + names[0])
    return [n for n in names if n != "f0003.txt"]
"""
FAILED_ITEMS = 5
FAILED_MINI_BATCHES = 2


@pytest.fixture
def job(runner):
    make_files(runner.inputs, 20)
    script = runner.script(SCRIPT)

    def run(**config):
        return runner.run(script, mini_batch_size=2, run_max_try=1, **config)

    return run


def test_error_threshold_equal_to_the_failed_items_passes(job):
    result = job(error_threshold=FAILED_ITEMS)
    assert result.success, result.reason
    assert result.totals.failed_items == FAILED_ITEMS


def test_error_threshold_one_below_the_failed_items_fails_naming_value_and_count(job):
    result = job(error_threshold=FAILED_ITEMS - 1)
    assert not result.success
    assert result.reason == (f"error_threshold exceeded: {FAILED_ITEMS} items failed, "
                             f"error_threshold is {FAILED_ITEMS - 1}")


def test_error_threshold_minus_one_ignores_every_failure(job):
    assert job(error_threshold=-1).success


def test_allowed_failed_count_equal_passes_one_less_fails(job):
    assert job(allowed_failed_count=FAILED_MINI_BATCHES).success
    result = job(allowed_failed_count=FAILED_MINI_BATCHES - 1)
    assert not result.success
    assert "allowed_failed_count exceeded: 2 mini-batches failed, allowed_failed_count is 1" == result.reason


def test_allowed_failed_percent_equal_passes_below_fails(job):
    assert job(allowed_failed_percent=20).success  # 2 of 10 mini-batches
    result = job(allowed_failed_percent=19.9)
    assert not result.success
    assert result.reason.startswith("allowed_failed_percent exceeded: 2 of 10 mini-batches failed (20.0%)")


def test_a_failed_job_leaves_no_output_file_and_says_why_in_job_result(job, runner):
    result = job(error_threshold=0)
    assert not result.success
    assert not (runner.output / "parallel_run_step.txt").exists()
    text = (runner.output / "logs/job_result.txt").read_text()
    assert text.startswith("FAILED\nreason: error_threshold exceeded")
    assert "see logs/user/error.txt" in text


def test_exceeding_a_threshold_stops_new_mini_batches(runner):
    make_files(runner.inputs, 40)
    script = runner.script("""
    import os, time
    def run(mini_batch):
        open(os.path.join(MARKS, "run-" + os.path.basename(mini_batch[0])), "w").close()
        if mini_batch[0].endswith("f0000.txt"):
            raise ValueError("first batch is bad")
        time.sleep(0.2)
        return mini_batch
    """)
    result = runner.run(script, mini_batch_size=1, run_max_try=1, allowed_failed_count=0,
                        process_count_per_node=2)
    assert not result.success and result.reason.startswith("allowed_failed_count exceeded: 1")
    started = len(runner.marks_named("run-"))
    assert started < 10  # stopped long before the 40 mini-batches
    assert result.missing_mini_batches >= 40 - started


def test_the_threshold_check_that_stopped_the_job_is_in_master_role(job, runner):
    assert not job(allowed_failed_count=0).success
    master = (runner.output / "logs/sys/master_role.txt").read_text()
    assert "threshold check on node 1: allowed_failed_count exceeded: 1 mini-batches failed" in master
