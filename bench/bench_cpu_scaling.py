"""Benchmark 3: does a second worker process double the throughput of CPU-bound work?

5,000 files, mini_batch_size 10, a run() doing about 2 ms of pure-Python computation per
file (scripts/cpu_work.py): about 10 s of work. process_count_per_node 1 and 2 are timed
as whole commands, alternately, 3 times each; speedup = median(1 process) / median(2).
Target: speedup >= 1.8 (on a 2-core machine the node's own supervisor shares the cores).

    .venv/bin/python bench/bench_cpu_scaling.py
"""

from __future__ import annotations

from benchlib import (
    Contender,
    Result,
    alternate_timings,
    engine_command,
    file_set,
    fresh_dir,
    median,
    report,
    same_lines,
    warm,
)

FILES = 5_000
MINI_BATCH_SIZE = 10
REPEATS = 3
TARGET = 1.8


def main() -> Result:
    print(f"bench_cpu_scaling: {FILES:,} files x ~2 ms of CPU, mini_batch_size "
          f"{MINI_BATCH_SIZE}, process_count_per_node 1 vs 2, {REPEATS} rounds")
    folder = file_set("cpu-5k", FILES, lambda i: str(i).encode())
    warm(folder)
    one_out, two_out = fresh_dir("cpu-ppn1"), fresh_dir("cpu-ppn2")
    contenders = [
        Contender("engine, 1 process", lambda: fresh_dir("cpu-ppn1"),
                  engine_command("cpu_work.py", folder, one_out, MINI_BATCH_SIZE, 1)),
        Contender("engine, 2 processes", lambda: fresh_dir("cpu-ppn2"),
                  engine_command("cpu_work.py", folder, two_out, MINI_BATCH_SIZE, 2)),
    ]
    timings = alternate_timings(contenders, REPEATS)
    one, two = (median([t.seconds for t in timings[c.name]]) for c in contenders)
    one_cpu, two_cpu = (median([t.cpu for t in timings[c.name]]) for c in contenders)
    speedup = one / two
    _, identical = same_lines(one_out / "parallel_run_step.txt", two_out / "parallel_run_step.txt")
    notes = (f"both outputs identical: {identical}; CPU seconds (median, all processes): "
             f"{one_cpu:.2f} with 1 process, {two_cpu:.2f} with 2")
    return Result("CPU scaling (5k x 2 ms, mbs 10)", f"{two:.2f} s @2", f"{one:.2f} s @1",
                  f"speedup {speedup:.2f}x", f">= {TARGET}x", speedup >= TARGET, notes)


if __name__ == "__main__":
    report(main())
