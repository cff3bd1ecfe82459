"""W2 and W3: the 400 MB table of bench/bench_tabular.py as CSV and as Parquet.

Every contender calls the same run() (bench_tabular's score.py: ``mini_batch[["id"]]``) on
pieces of about 10 MB, with 2 processes or actors, and writes the 8,000,000 ids one a line:
parallel-run (``--mini-batch-size 10MB``); Ray Data (``read_csv``/``read_parquet``, then
``map_batches`` on 2 actors in batches of as many rows as 10 MB holds); Dask
(``read_csv(blocksize=10 MB)``, ``read_parquet(split_row_groups=True)``: a partition per row
group of 250,000 rows) with its process pool, and with its threads (Dask's default for
DataFrames). Targets: ours at least 1.2x faster than the fastest peer on CSV; ours the
lowest peak memory on both.
"""

from __future__ import annotations

from functools import partial

import peerlib  # first: it puts bench/ on sys.path
from bench_tabular import CSV, MINI_BATCH_BYTES, PARQUET, ROWS, SCORE, make_table, warm
from bench_tabular import engine_command as tabular_engine_command
from peerlib import OUT, PeerContender, Row, Section, check_ids, engine, peer

PROCESSES = 2
OURS = "ours (parallel-run)"


def contenders(fmt: str) -> list[PeerContender]:
    path = CSV if fmt == "csv" else PARQUET
    rows_per_batch = ROWS * MINI_BATCH_BYTES // path.stat().st_size
    ours = OUT / f"{fmt}-ours"
    made = [engine(OURS, tabular_engine_command(path, fmt, ours), ours,
                   partial(check_ids, rows=ROWS, ordered=True))]
    workers = ("--workers", str(PROCESSES))
    peers = [("Ray Data (2 actors)", "ray",
              ("--batch", str(rows_per_batch), "--actors", str(PROCESSES))),
             ("Dask (2 processes)", "dask", ("--batch", str(MINI_BATCH_BYTES), *workers)),
             ("Dask (2 threads)", "dask",
              ("--batch", str(MINI_BATCH_BYTES), *workers, "--scheduler", "threads"))]
    for name, tool, options in peers:
        made.append(peer(name, tool, fmt, SCORE, path, OUT / f"{fmt}-{peerlib.slug(name)}.txt",
                         options, partial(check_ids, rows=ROWS, ordered=tool == "dask")))
    return made


def compare(fmt: str, workload: str, speed_target: float | None) -> Section:
    make_table()
    warm(CSV, PARQUET)
    rows = peerlib.compare(workload, contenders(fmt), OURS)
    notes = [memory_verdict(rows)]
    if speed_target is not None:
        notes.insert(0, peerlib.speed_verdict(rows, OURS, speed_target))
    return Section(workload, peerlib.rows_table(rows), notes)


def memory_verdict(rows: list[Row]) -> str:
    """Judged by peak PSS, the memory the tree takes from the machine (a page shared by
    several of its processes counts once, as in a container's memory limit); summed RSS,
    which counts a shared page in every process that maps it, is reported beside it."""
    by_pss = min(rows, key=lambda r: r.peak_pss_mb)
    verdict = "pass" if by_pss.contender == OURS else "MISS"
    by_rss = min(rows, key=lambda r: r.peak_rss_mb)
    return (f"peak PSS of the whole process tree (shared pages counted once): lowest "
            f"{by_pss.contender} {by_pss.peak_pss_mb:,.0f} MB (target: ours the lowest): "
            f"{verdict}; peak summed RSS (shared pages counted in each process): lowest "
            f"{by_rss.contender} {by_rss.peak_rss_mb:,.0f} MB")
