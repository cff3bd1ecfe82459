"""The output lock: one live job per output location; a dead holder's lock is taken over."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from airflow_parallel_run.leases import LOCK, Lease, OutputInUse, OutputLock, create_exclusive
from airflow_parallel_run.storage import LocalLocation


def test_a_second_job_is_refused_naming_the_holder(tmp_path):
    location = LocalLocation(str(tmp_path))
    first = OutputLock(location, "job-a")
    first.acquire()

    with pytest.raises(OutputInUse) as refused:
        OutputLock(location, "job-b").acquire()

    message = str(refused.value)
    assert message.startswith("output folder in use by ")
    assert f"pid {os.getpid()} since " in message
    assert OutputLock(location, "x").read().holder == "job-a"


def test_the_same_holder_takes_its_lock_again(tmp_path):
    location = LocalLocation(str(tmp_path))
    OutputLock(location, "dag-run-1").acquire()
    again = OutputLock(location, "dag-run-1")

    again.acquire()

    assert again.read().token == again.lease.token


def test_release_frees_the_output_for_another_job(tmp_path):
    location = LocalLocation(str(tmp_path))
    first = OutputLock(location, "job-a")
    first.acquire()
    first.release()

    OutputLock(location, "job-b").acquire()

    assert OutputLock(location, "x").read().holder == "job-b"


def test_release_by_another_holder_leaves_the_lock(tmp_path):
    location = LocalLocation(str(tmp_path))
    OutputLock(location, "job-a").acquire()

    OutputLock(location, "job-b").release()

    assert OutputLock(location, "x").read().holder == "job-a"


def test_an_expired_lock_is_taken_over_and_remembered(tmp_path):
    location = LocalLocation(str(tmp_path))
    old = OutputLock(location, "job-a", ttl=0.2)
    old.acquire()
    time.sleep(0.3)

    new = OutputLock(location, "job-b")
    new.acquire()

    assert new.previous is not None and new.previous.holder == "job-a"
    assert new.read().holder == "job-b"
    assert not [n for n in os.listdir(tmp_path) if "takeover" in n]


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    location = LocalLocation(str(tmp_path))
    code = ("import sys; from airflow_parallel_run.leases import OutputLock; "
            "from airflow_parallel_run.storage import LocalLocation; "
            "OutputLock(LocalLocation(sys.argv[1]), 'killed-job', ttl=3600).acquire()")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)

    lock = OutputLock(location, "next-job")
    lock.acquire()

    assert lock.previous is not None and lock.previous.holder == "killed-job"


def test_a_lock_not_bound_to_its_pid_holds_after_its_process_ends(tmp_path):
    code = ("import sys; from airflow_parallel_run.leases import OutputLock; "
            "from airflow_parallel_run.storage import LocalLocation; "
            "OutputLock(LocalLocation(sys.argv[1]), 'dag run', ttl=3600, pid_bound=False).acquire()")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)

    with pytest.raises(OutputInUse):
        OutputLock(LocalLocation(str(tmp_path)), "another job").acquire()
    OutputLock(LocalLocation(str(tmp_path)), "dag run", pid_bound=False).acquire()


def test_renewing_pushes_the_expiry_and_notices_a_lost_lock(tmp_path):
    location = LocalLocation(str(tmp_path))
    lock = OutputLock(location, "job-a", ttl=30)
    lock.acquire()
    first = lock.read().expires
    time.sleep(0.05)

    assert lock.renew()
    assert lock.read().expires > first
    location.write_atomic(LOCK, Lease("job-b", expires=time.time() + 60).to_json())
    assert not lock.renew()


def test_a_renewed_lock_outlives_its_ttl(tmp_path):
    location = LocalLocation(str(tmp_path))
    lock = OutputLock(location, "job-a", ttl=0.4)
    lock.acquire()
    lock.start_renewing()
    try:
        time.sleep(1.0)
        with pytest.raises(OutputInUse):
            OutputLock(location, "job-b").acquire()
    finally:
        lock.release()
    assert not location.exists(LOCK)


def test_a_torn_lock_file_counts_as_held_until_its_ttl_runs_out(tmp_path):
    location = LocalLocation(str(tmp_path))
    (tmp_path / LOCK).write_bytes(b'{"holder": "job-a", "ho')

    with pytest.raises(OutputInUse, match="torn"):
        OutputLock(location, "job-b", ttl=60).acquire()
    old = time.time() - 120
    os.utime(tmp_path / LOCK, (old, old))
    OutputLock(location, "job-b", ttl=60).acquire()


def test_create_exclusive_makes_a_file_once(tmp_path):
    location = LocalLocation(str(tmp_path))

    assert create_exclusive(location, "a/claim", b"1") is True
    assert create_exclusive(location, "a/claim", b"2") is False
    assert (tmp_path / "a" / "claim").read_bytes() == b"1"


def _race(root: str, holder: str, start: float, won: multiprocessing.Queue) -> None:
    while time.time() < start:
        pass
    try:
        OutputLock(LocalLocation(root), holder, ttl=60).acquire()
        won.put(holder)
    except OutputInUse:
        won.put(None)


def test_of_jobs_starting_at_once_exactly_one_gets_the_lock(tmp_path):
    # spawned, not forked: a fork of a process whose fsspec I/O thread runs can hang
    context = multiprocessing.get_context("spawn")
    won: multiprocessing.Queue = context.Queue()
    start = time.time() + 3.0
    racers = [context.Process(target=_race, args=(str(tmp_path), f"job-{i}", start, won))
              for i in range(8)]
    for racer in racers:
        racer.start()
    results = [won.get(timeout=60) for _ in racers]
    for racer in racers:
        racer.join()

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert OutputLock(LocalLocation(str(tmp_path)), "x").read().holder == winners[0]


def _one_of_two_creates_wins_and_a_second_job_is_refused(location) -> None:
    assert create_exclusive(location, "claim", b"first") is True
    assert create_exclusive(location, "claim", b"second") is False
    assert location.read_bytes("claim") == b"first"

    OutputLock(location, "job-a").acquire()
    with pytest.raises(OutputInUse, match="output folder in use by "):
        OutputLock(location, "job-b").acquire()


def test_on_s3_exactly_one_of_two_creates_wins_and_a_second_job_is_refused(s3):
    from airflow_parallel_run.storage import open_location

    _, options, prefix, _ = s3
    _one_of_two_creates_wins_and_a_second_job_is_refused(open_location(f"s3://{prefix}/out", options))


def test_on_azure_exactly_one_of_two_creates_wins_and_a_second_job_is_refused(azure):
    from airflow_parallel_run.storage import open_location

    _, options, prefix = azure
    _one_of_two_creates_wins_and_a_second_job_is_refused(open_location(f"abfs://{prefix}/out", options))


def test_on_gcs_exactly_one_of_two_creates_wins_and_a_second_job_is_refused(gcs):
    from airflow_parallel_run.storage import open_location

    _, options, prefix = gcs
    _one_of_two_creates_wins_and_a_second_job_is_refused(open_location(f"gs://{prefix}/out", options))
