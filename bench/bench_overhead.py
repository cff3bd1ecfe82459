"""Benchmark 2: what one mini-batch costs the engine.

20,000 files, 2 processes, a run() that does nothing but return its input. Three commands,
timed alternately, 3 times each:

- engine, mini_batch_size 1 (20,000 mini-batches)
- engine, mini_batch_size 1000 (20 mini-batches)
- the hand-written ProcessPoolExecutor(2) baseline with chunks of 1

The headline number is the engine against itself: (wall time at size 1 - wall time at
size 1000) / (20,000 - 20). Start-up, planning the same 20,000 files, reading them and
writing the same 20,000 output lines are in both runs and cancel out; what is left is what
every extra mini-batch costs, in full (dispatch, the worker's record, logs, the reducer).
The pool comparison, (engine at size 1 - pool with chunks of 1) / 20,000, is printed too:
it counts only what the engine adds over a bare pool's own per-task cost.
Target: at most 1 ms per mini-batch.

    .venv/bin/python bench/bench_overhead.py
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
    warm,
)

FILES = 20_000
BIG = 1000
PROCESSES = 2
REPEATS = 3
TARGET_MS = 1.0


def main() -> Result:
    print(f"bench_overhead: {FILES:,} files, trivial run(), {PROCESSES} processes, "
          f"mini_batch_size 1 vs {BIG} (and a pool with chunks of 1), {REPEATS} rounds")
    folder = file_set("overhead-20k", FILES, lambda i: b"")
    warm(folder)
    small_out, big_out = fresh_dir("overhead-mbs1"), fresh_dir(f"overhead-mbs{BIG}")
    pool_out = fresh_dir("overhead-pool") / "lines.txt"
    contenders = [
        Contender("engine, mini_batch_size 1", lambda: fresh_dir("overhead-mbs1"),
                  engine_command("trivial.py", folder, small_out, 1, PROCESSES)),
        Contender(f"engine, mini_batch_size {BIG}", lambda: fresh_dir(f"overhead-mbs{BIG}"),
                  engine_command("trivial.py", folder, big_out, BIG, PROCESSES)),
        Contender("pool, chunks of 1", lambda: pool_out.unlink(missing_ok=True),
                  baseline_command("trivial.py", folder, pool_out, 1, PROCESSES)),
    ]
    timings = alternate_timings(contenders, REPEATS)
    small, big, pool = (median([t.seconds for t in timings[c.name]]) for c in contenders)
    small_cpu, big_cpu = (median([t.cpu for t in timings[c.name]]) for c in contenders[:2])
    extra_batches = FILES - FILES // BIG
    per_batch_ms = (small - big) / extra_batches * 1000
    over_pool_ms = (small - pool) / FILES * 1000
    notes = (f"engine mini_batch_size 1: {small:.2f} s, mini_batch_size {BIG}: {big:.2f} s -> "
             f"({small:.2f} - {big:.2f}) / {extra_batches:,} = {per_batch_ms:.3f} ms per mini-batch\n"
             f"pool, chunks of 1: {pool:.2f} s -> ({small:.2f} - {pool:.2f}) / {FILES:,} = "
             f"{over_pool_ms:.3f} ms per mini-batch over a bare ProcessPoolExecutor "
             f"(whose own cost is about {pool / FILES * 1000:.3f} ms per task, start-up included)\n"
             f"CPU (all processes): {small_cpu:.2f} CPU-s at size 1, {big_cpu:.2f} at size {BIG} "
             f"-> {(small_cpu - big_cpu) / extra_batches * 1000:.3f} CPU-ms per mini-batch")
    return Result("per-mini-batch overhead (20k files, 2 proc)",
                  f"{small:.2f} s @1", f"{big:.2f} s @{BIG}",
                  f"{per_batch_ms:.3f} ms/mini-batch", f"<= {TARGET_MS:g} ms",
                  per_batch_ms <= TARGET_MS, notes)


if __name__ == "__main__":
    report(main())
