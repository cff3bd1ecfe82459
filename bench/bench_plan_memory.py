"""Benchmark 4: the planner's peak memory over 1,000,000 empty files in one folder.

The parent process is measured alone: a fresh interpreter imports the engine, makes the
``Job`` and runs ``plan(job)`` (listing, fingerprint, plan chunks; no worker is started),
then reports its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``). For reference, the
same probe without ``plan(job)`` shows what the interpreter and the imports take.
mini_batch_size is the default, 10 (100,000 mini-batches). Target: peak <= 150 MB.

    .venv/bin/python bench/bench_plan_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from benchlib import DATA, PYTHON, SCRIPTS, Result, file_set, fresh_dir, report

FILES = 1_000_000
MINI_BATCH_SIZE = 10
TARGET_MB = 150.0


def probe(folder: str, output: str, with_plan: bool) -> None:
    """Runs in the fresh subprocess: make the job, maybe plan it, print what it cost."""
    from airflow_parallel_run import FileDataset, ParallelRunConfig
    from airflow_parallel_run.engine.job import Job, plan

    started = time.perf_counter()
    config = ParallelRunConfig(entry_script=str(SCRIPTS / "trivial.py"),
                               mini_batch_size=MINI_BATCH_SIZE)
    job = Job(config, [FileDataset.from_files(folder)], output)
    found = plan(job).item_count if with_plan else 0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_mb": peak_kb / 1024, "items": found,
                      "seconds": time.perf_counter() - started}))


def measure(folder: str, with_plan: bool) -> dict:
    output = fresh_dir("plan-memory")
    done = subprocess.run([PYTHON, __file__, "--probe", folder, str(output), str(int(with_plan))],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> Result:
    print(f"bench_plan_memory: planning {FILES:,} empty files in one folder "
          f"(mini_batch_size {MINI_BATCH_SIZE}), parent process alone")
    folder = str(file_set("empty-1m", FILES, lambda i: b""))
    measure(folder, True)  # once untimed: the folder's inodes into the cache
    setup = measure(folder, False)
    planned = measure(folder, True)
    assert planned["items"] == FILES, planned
    peak = planned["peak_mb"]
    notes = (f"peak RSS planning: {peak:.1f} MB (planning took {planned['seconds']:.1f} s); "
             f"the same process without plan(job): {setup['peak_mb']:.1f} MB; "
             f"planning adds {peak - setup['peak_mb']:.1f} MB for {FILES:,} files; data in {DATA}")
    return Result("plan memory (1M empty files, one folder)", f"{peak:.1f} MB",
                  f"{setup['peak_mb']:.1f} MB w/o plan", f"peak {peak:.1f} MB",
                  f"<= {TARGET_MB:g} MB", peak <= TARGET_MB, notes)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--probe":
        probe(sys.argv[2], sys.argv[3], sys.argv[4] == "1")
    else:
        report(main())
