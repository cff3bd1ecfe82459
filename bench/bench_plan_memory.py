"""Benchmark 4: the planner's peak memory over 1,000,000 empty files in one folder.

The parent process is measured alone: a fresh interpreter imports the engine, makes the
``Job`` and runs ``plan(job)`` (listing, fingerprint, plan chunks; no worker is started),
then reports its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``). For reference, the
same probe without ``plan(job)`` shows what the interpreter and the imports take.

Three cases: the default mini_batch_size, 10 (100,000 mini-batches), and 1000 (1,000
mini-batches of 1,000 files), both planned as ``parallel-run`` plans (``stat_inputs=False``:
no stat per file), and 1000 once more as the Airflow planner plans (a stat per file, for
allow_reuse). The verdict takes the largest peak. Target: peak <= 150 MB.

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
CASES = (  # (mini_batch_size, stat each file, how)
    (10, False, "as parallel-run plans"),
    (1000, False, "as parallel-run plans"),
    (1000, True, "as the Airflow planner plans"),
)
TARGET_MB = 150.0


def probe(folder: str, output: str, mini_batch_size: int, stat_inputs: bool,
          with_plan: bool) -> None:
    """Runs in the fresh subprocess: make the job, maybe plan it, print what it cost."""
    from airflow_parallel_run import FileDataset, ParallelRunConfig
    from airflow_parallel_run.engine.job import Job

    started = time.perf_counter()
    config = ParallelRunConfig(entry_script=str(SCRIPTS / "trivial.py"),
                               mini_batch_size=mini_batch_size)
    job = Job(config, [FileDataset.from_files(folder)], output, stat_inputs=stat_inputs)
    found = job.plan().item_count if with_plan else 0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_mb": peak_kb / 1024, "items": found,
                      "seconds": time.perf_counter() - started}))


def measure(folder: str, mini_batch_size: int, stat_inputs: bool, with_plan: bool) -> dict:
    output = fresh_dir("plan-memory")
    done = subprocess.run([PYTHON, __file__, "--probe", folder, str(output), str(mini_batch_size),
                           str(int(stat_inputs)), str(int(with_plan))],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> Result:
    print(f"bench_plan_memory: planning {FILES:,} empty files in one folder, "
          "parent process alone")
    folder = str(file_set("empty-1m", FILES, lambda i: b""))
    measure(folder, 10, True, True)  # once unmeasured: the folder's inodes into the cache
    setup = measure(folder, 10, False, False)
    print(f"  without plan(job): peak {setup['peak_mb']:.1f} MB (interpreter and imports)")
    peaks = []
    for size, stat_inputs, how in CASES:
        planned = measure(folder, size, stat_inputs, True)
        assert planned["items"] == FILES, planned
        label = f"mini_batch_size {size}, {how}"
        peaks.append((planned["peak_mb"], label))
        print(f"  {label}: peak {planned['peak_mb']:.1f} MB "
              f"(plan(job) took {planned['seconds']:.1f} s)", flush=True)
    worst, worst_label = max(peaks)
    notes = "; ".join(f"{label}: peak RSS {peak:.1f} MB" for peak, label in peaks)
    notes += f"; the same process without plan(job): {setup['peak_mb']:.1f} MB"
    return Result("plan memory (1M empty files, one folder)",
                  f"{worst:.1f} MB", f"{setup['peak_mb']:.1f} MB w/o plan",
                  f"peak {worst:.1f} MB ({worst_label.split(',')[0]})",
                  f"<= {TARGET_MB:g} MB", worst <= TARGET_MB, notes)


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--probe":
        probe(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1", sys.argv[6] == "1")
    else:
        report(main())
