"""Records in a local output: append-only logs, one per writer; what a crash leaves is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from airflow_parallel_run.results import (
    FAILED,
    OK,
    RESULTS_DIR,
    MiniBatchRecord,
    RecordLog,
    Records,
    read_records,
)
from airflow_parallel_run.storage import LocalLocation


def ok(index: int, lines: int = 1) -> tuple[MiniBatchRecord, bytes]:
    return MiniBatchRecord(index, OK, lines, lines, 0, 1), b"".join(
        f"line {index}.{i}\n".encode() for i in range(lines))


def test_records_of_several_writers_read_back_with_their_lines(tmp_path):
    location = LocalLocation(str(tmp_path))
    first, second = RecordLog(location, "w1"), RecordLog(location, "w2")
    for index in (0, 2, 4):
        first.write(*ok(index, 3))
    for index in (1, 3):
        second.write(*ok(index, 2))
    first.close()
    second.close()

    records = Records(location)
    assert records.indices() == [0, 1, 2, 3, 4]
    assert records.read(3) == ok(3, 2)
    out = os.open(tmp_path / "out.txt", os.O_WRONLY | os.O_CREAT)
    for index in range(5):
        records.append_to(index, out)
    os.close(out)
    assert (tmp_path / "out.txt").read_bytes() == b"".join(
        ok(i, 3 if i % 2 == 0 else 2)[1] for i in range(5))
    assert set(read_records(location, range(1, 3))) == {1, 2}


def test_a_torn_tail_is_skipped_and_the_whole_records_before_it_count(tmp_path):
    location = LocalLocation(str(tmp_path))
    log = RecordLog(location, "w")
    log.write(*ok(0))
    rel, offset, length = log.write(*ok(1, 50))
    log.close()
    path = location.path(rel)
    with open(path, "r+b") as handle:  # a crash in the middle of the second record's lines
        handle.truncate(offset + length - 10)
    assert Records(location).indices() == [0]

    other = RecordLog(location, "v")
    other.write(*ok(2))
    other.close()
    with open(location.path(other.rel), "ab") as handle:  # a header cut in the middle
        handle.write(b'{"index": 7, "sta')
    assert Records(location).indices() == [0, 2]


def test_each_writer_has_a_log_of_its_own_even_with_a_reused_pid(tmp_path):
    # a log is never appended to by a second process: a torn tail stays at the end
    location = LocalLocation(str(tmp_path))
    first, second = RecordLog.for_process(location, "ip-process000"), \
        RecordLog.for_process(location, "ip-process000")
    assert first.rel != second.rel and str(os.getpid()) in first.rel


def test_the_last_record_written_for_a_mini_batch_counts(tmp_path):
    # a worker wrote its record and was killed before it said so; the retries all failed
    location = LocalLocation(str(tmp_path))
    RecordLog(location, "worker").write(*ok(5))
    RecordLog(location, "node").write(MiniBatchRecord(5, FAILED, 1, 0, 1, 3))
    record = Records(location).record(5)
    assert record is not None and record.status == FAILED and record.tries == 3


def test_a_write_that_fails_half_way_is_cut_off_again(tmp_path):
    # the file size limit makes the second write fail after part of it is on disk (EFBIG)
    script = textwrap.dedent(f"""
        import resource, signal
        from airflow_parallel_run.results import MiniBatchRecord, RecordLog
        from airflow_parallel_run.storage import LocalLocation
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        log = RecordLog(LocalLocation({str(tmp_path)!r}), "w")
        log.write(MiniBatchRecord(0, "ok", 1, 1, 0, 1), b"first\\n")
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            log.write(MiniBatchRecord(1, "ok", 1, 1, 0, 1), b"x" * 100_000)
        except OSError as exc:
            print("refused", exc.errno)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        log.write(MiniBatchRecord(2, "ok", 1, 1, 0, 1), b"third\\n")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.startswith("refused")
    records = Records(LocalLocation(str(tmp_path)))
    assert records.indices() == [0, 2]
    assert records.read(2)[1] == b"third\n"
    assert (tmp_path / RESULTS_DIR / "w.log").stat().st_size < 4096
