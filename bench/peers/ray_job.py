"""The Ray Data contender: an entry script's run() over files or a table, on an actor pool.

    python ray_job.py files|csv|parquet SCRIPT INPUT OUTPUT --batch N --actors N
        [--tolerate-errors] [--retries N]

Runs in the peers' virtualenv. A local Ray instance (``ray.init(num_cpus=2)``, no
dashboard); ``map_batches`` with a class whose ``__init__`` loads the script once per actor
and whose ``__call__`` calls ``run()`` on a batch of ``--batch`` paths (files) or rows (a
pandas DataFrame, tables). The driver streams the results into OUTPUT: one line per item
for files, the DataFrame as CSV without header for tables. Ray does not keep the input
order unless asked (``preserve_order``); the defaults are kept. For tables each actor asks
for half a CPU, so that Ray's read tasks get the other one.

``--tolerate-errors`` skips batches whose run() raised (``max_errored_blocks = -1``) instead
of failing the job; ``--retries N`` restarts a dead actor and retries its batches N times
(``max_restarts``, ``max_task_retries``). Ray Data has no per-batch timeout.
"""

from __future__ import annotations

import argparse
import os

import entry
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import ray


class EntryActor:
    """One actor of the pool: the entry script, loaded once; run() on each batch."""

    def __init__(self, script: str, files: bool) -> None:
        self.module = entry.load(script)
        self.files = files

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.files:
            return pd.DataFrame({"line": self.module.run(list(batch["path"]))})
        return self.module.run(batch)


def dataset(kind: str, source: str) -> ray.data.Dataset:
    if kind == "csv":
        return ray.data.read_csv(source)
    if kind == "parquet":
        return ray.data.read_parquet(source)
    paths = [os.path.join(source, name) for name in sorted(os.listdir(source))]
    return ray.data.from_items([{"path": path} for path in paths])


def write(batch: pa.Table, out) -> None:
    if batch.column_names == ["line"]:
        out.write("".join(f"{line}\n" for line in batch.column("line").to_pylist()).encode())
    else:
        pacsv.write_csv(batch, out, pacsv.WriteOptions(include_header=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("files", "csv", "parquet"))
    parser.add_argument("script")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--actors", type=int, required=True)
    parser.add_argument("--tolerate-errors", action="store_true")
    parser.add_argument("--retries", type=int, default=0)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False)
    if args.tolerate_errors:
        ray.data.DataContext.get_current().max_errored_blocks = -1
    results = dataset(args.kind, args.input).map_batches(
        EntryActor, batch_size=args.batch, batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=args.actors),
        # A table is read by Ray's own tasks, which need a CPU too: actors holding both
        # CPUs would leave the read waiting for good.
        num_cpus=1 if args.kind == "files" else 0.5,
        fn_constructor_kwargs={"script": os.path.abspath(args.script),
                               "files": args.kind == "files"},
        **({"max_restarts": args.retries, "max_task_retries": args.retries}
           if args.retries else {}))
    with open(args.output, "wb") as out:
        for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
            write(batch, out)


if __name__ == "__main__":
    main()
