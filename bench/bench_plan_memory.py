"""Benchmark 4: the planner's peak memory over 1,000,000 empty files in one folder.

The parent process is measured alone: a fresh interpreter imports the engine, makes the
``Job`` and runs ``plan(job)`` (listing, fingerprint, plan chunks; no worker is started),
then reports its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``). For reference, the
same probe without ``plan(job)`` shows what the interpreter and the imports take.
It is measured at the default mini_batch_size, 10 (100,000 mini-batches), and at 1000
(1,000 mini-batches of 1,000 files): the verdict takes the larger peak.
Target: peak <= 150 MB.

    .venv/bin/python bench/bench_plan_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from benchlib import PYTHON, SCRIPTS, Result, file_set, fresh_dir, report

FILES = 1_000_000
MINI_BATCH_SIZES = (10, 1000)
TARGET_MB = 150.0


def probe(folder: str, output: str, mini_batch_size: int, with_plan: bool) -> None:
    """Runs in the fresh subprocess: make the job, maybe plan it, print what it cost."""
    from airflow_parallel_run import FileDataset, ParallelRunConfig
    from airflow_parallel_run.engine.job import Job, plan

    started = time.perf_counter()
    config = ParallelRunConfig(entry_script=str(SCRIPTS / "trivial.py"),
                               mini_batch_size=mini_batch_size)
    job = Job(config, [FileDataset.from_files(folder)], output)
    found = plan(job).item_count if with_plan else 0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_mb": peak_kb / 1024, "items": found,
                      "seconds": time.perf_counter() - started}))


def measure(folder: str, mini_batch_size: int, with_plan: bool) -> dict:
    output = fresh_dir("plan-memory")
    done = subprocess.run([PYTHON, __file__, "--probe", folder, str(output), str(mini_batch_size),
                           str(int(with_plan))], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> Result:
    print(f"bench_plan_memory: planning {FILES:,} empty files in one folder "
          f"(mini_batch_size {' and '.join(map(str, MINI_BATCH_SIZES))}), parent process alone")
    folder = str(file_set("empty-1m", FILES, lambda i: b""))
    measure(folder, MINI_BATCH_SIZES[0], True)  # once unmeasured: the inodes into the cache
    setup = measure(folder, MINI_BATCH_SIZES[0], False)
    print(f"  without plan(job): peak {setup['peak_mb']:.1f} MB")
    peaks = {}
    for size in MINI_BATCH_SIZES:
        planned = measure(folder, size, True)
        assert planned["items"] == FILES, planned
        peaks[size] = planned["peak_mb"]
        print(f"  mini_batch_size {size}: peak {planned['peak_mb']:.1f} MB "
              f"(plan(job) took {planned['seconds']:.1f} s)", flush=True)
    worst = max(peaks.values())
    notes = "; ".join(f"mini_batch_size {size}: peak RSS {peak:.1f} MB"
                      for size, peak in peaks.items())
    notes += (f"; the same process without plan(job): {setup['peak_mb']:.1f} MB "
              f"(interpreter and imports)")
    return Result("plan memory (1M empty files, one folder)",
                  " / ".join(f"{peak:.0f} MB @{size}" for size, peak in peaks.items()),
                  f"{setup['peak_mb']:.0f} MB w/o plan", f"peak {worst:.1f} MB",
                  f"<= {TARGET_MB:g} MB", worst <= TARGET_MB, notes)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--probe":
        probe(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1")
    else:
        report(main())
