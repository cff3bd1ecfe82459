"""The Dask contender: an entry script's run() over files (dask.bag) or a table
(dask.dataframe), each worker process loading the script once.

    python dask_job.py files|csv|parquet SCRIPT INPUT OUTPUT --batch N --workers N
        [--scheduler processes|threads|distributed] [--retries N]

Runs in the peers' virtualenv. Files: ``dask.bag.from_sequence(paths,
partition_size=--batch).map_partitions(run)``, the results gathered and written one line per
item. Tables: ``dask.dataframe.read_csv(blocksize=--batch bytes)`` or
``read_parquet(split_row_groups=True)`` (a partition per row group), then
``map_partitions(run)`` and ``to_csv(single_file=True)`` without header. Dask keeps the
partitions' order.

Schedulers: ``processes`` (the default, Dask's local process pool of ``--workers``),
``threads`` (Dask's default for DataFrames), or ``distributed``: a ``LocalCluster`` of
``--workers`` single-threaded worker processes, the only one that retries a failed task
(``--retries``). No Dask scheduler has a per-task timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

import dask
import dask.bag as db
import dask.dataframe as dd
import entry
import pandas as pd


def run_files(paths: list[str], script: str) -> list:
    return list(entry.load(script).run(list(paths)))


def run_frame(frame: pd.DataFrame, script: str) -> pd.DataFrame:
    return entry.load(script).run(frame)


@contextlib.contextmanager
def scheduler(name: str, workers: int, retries: int) -> Iterator[dict]:
    """The keyword arguments of ``compute`` for scheduler NAME, with its cluster up."""
    if name != "distributed":
        yield {"scheduler": name, "num_workers": workers}
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        yield {"retries": retries}


def run_table(args: argparse.Namespace, compute: dict) -> None:
    if args.kind == "csv":
        frame = dd.read_csv(args.input, blocksize=args.batch)
    else:
        frame = dd.read_parquet(args.input, split_row_groups=True)
    # The result's columns and types, from run() on the empty frame: what Dask's own
    # inference would do, without its warning.
    meta = run_frame(frame._meta, args.script)
    results = frame.map_partitions(run_frame, args.script, meta=meta)
    results.to_csv(args.output, single_file=True, header=False, index=False,
                   compute_kwargs=compute)


def run_file_list(args: argparse.Namespace, compute: dict) -> None:
    paths = [os.path.join(args.input, name) for name in sorted(os.listdir(args.input))]
    bag = db.from_sequence(paths, partition_size=args.batch).map_partitions(
        run_files, args.script)
    (lines,) = dask.compute(bag, **compute)
    with open(args.output, "w", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("files", "csv", "parquet"))
    parser.add_argument("script")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--scheduler", choices=("processes", "threads", "distributed"),
                        default="processes")
    parser.add_argument("--retries", type=int, default=0)
    args = parser.parse_args()
    args.script = os.path.abspath(args.script)
    with scheduler(args.scheduler, args.workers, args.retries) as compute:
        if args.kind == "files":
            run_file_list(args, compute)
        else:
            run_table(args, compute)


if __name__ == "__main__":
    main()
