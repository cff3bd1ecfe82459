"""Benchmark 1: many tiny files, the engine against a hand-written process pool.

100,000 files of a few bytes, mini_batch_size 100, 2 processes; run() reads each file and
returns "<name>: <content>". The baseline (pool_baseline.py) lists the folder, chunks it by
100 and maps the same run() over a ProcessPoolExecutor(2), writing one output file in order.
Both are timed as whole commands, alternately, 3 times; the medians are compared.
Target: engine / baseline <= 1.25, with the same output lines.

    .venv/bin/python bench/bench_tiny_files.py
"""

from __future__ import annotations

from benchlib import (
    Contender,
    Result,
    alternate_timings,
    baseline_command,
    engine_command,
    file_set,
    fresh_dir,
    median,
    report,
    same_lines,
    warm,
)

FILES = 100_000
MINI_BATCH_SIZE = 100
PROCESSES = 2
REPEATS = 3
TARGET = 1.25


def main() -> Result:
    print(f"bench_tiny_files: {FILES:,} tiny files, mini_batch_size {MINI_BATCH_SIZE}, "
          f"{PROCESSES} processes, {REPEATS} alternating rounds")
    folder = file_set("tiny-100k", FILES, lambda i: f"value {i}".encode())
    warm(folder)
    engine_out = fresh_dir("tiny-engine")
    baseline_out = fresh_dir("tiny-baseline") / "lines.txt"
    contenders = [
        Contender("engine (parallel-run)", lambda: fresh_dir("tiny-engine"),
                  engine_command("read_lines.py", folder, engine_out, MINI_BATCH_SIZE, PROCESSES)),
        Contender("baseline (ProcessPool)", lambda: baseline_out.unlink(missing_ok=True),
                  baseline_command("read_lines.py", folder, baseline_out, MINI_BATCH_SIZE,
                                   PROCESSES)),
    ]
    timings = alternate_timings(contenders, REPEATS)
    engine, baseline = (median([t.seconds for t in timings[c.name]]) for c in contenders)
    engine_cpu, baseline_cpu = (median([t.cpu for t in timings[c.name]]) for c in contenders)
    ratio = engine / baseline
    sorted_equal, in_order = same_lines(engine_out / "parallel_run_step.txt", baseline_out)
    lines = sum(1 for _ in baseline_out.open("rb"))
    notes = (f"outputs identical (sorted lines equal): {sorted_equal}; "
             f"same order too: {in_order}; {lines:,} lines\n"
             f"CPU seconds (median, the command and its children): engine {engine_cpu:.2f}, "
             f"baseline {baseline_cpu:.2f}, ratio {engine_cpu / baseline_cpu:.2f}")
    return Result("tiny files (100k x few B, mbs 100, 2 proc)", f"{engine:.2f} s",
                  f"{baseline:.2f} s", f"ratio {ratio:.2f}", f"<= {TARGET}",
                  ratio <= TARGET and sorted_equal, notes)


if __name__ == "__main__":
    report(main())
