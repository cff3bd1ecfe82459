"""Run every engine benchmark and print one table (``make bench``).

    .venv/bin/python bench/run_all.py [NAME ...]     e.g. run_all.py tiny_files cpu_scaling

Takes about a minute and a half on a quiet 2-core machine once the inputs exist; creating
them the first time (1,125,000 small files under /tmp/bench-data) adds about half a minute.
On a busy machine disturbed measurements are taken again, which can double that.
Benchmarks print ratios; a missed target is shown as MISS, it does not fail the run.
"""

from __future__ import annotations

import sys
import time

import bench_cpu_scaling
import bench_logging_cost
import bench_overhead
import bench_plan_memory
import bench_tiny_files
from benchlib import DATA, Result, machine, table

BENCHMARKS = {
    "tiny_files": bench_tiny_files.main,
    "overhead": bench_overhead.main,
    "cpu_scaling": bench_cpu_scaling.main,
    "plan_memory": bench_plan_memory.main,
    "logging_cost": bench_logging_cost.main,
}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    print(f"engine benchmarks on {machine()}; data in {DATA}\n")
    started = time.monotonic()
    results: list[Result] = []
    for name in names or list(BENCHMARKS):
        results.append(BENCHMARKS[name]())
        print(f"  -> {results[-1].measure} (target {results[-1].target}): "
              f"{results[-1].verdict}\n", flush=True)
    print(table(results))
    for result in results:
        if result.notes:
            print(f"\n{result.name}:\n{result.notes}")
    print(f"\nall benchmarks: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
