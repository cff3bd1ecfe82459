"""The cost of logs: logging and monitoring must not slow the tiny-files job by > 5%.

The tiny-files job of bench_tiny_files (100,000 files, mini_batch_size 100, 2 processes),
timed as whole commands, alternately, 3 times each: with the resource monitor sampling every
second (`--resource-monitor-interval 1`, 600 times its default rate) and `--logging-level
DEBUG` (a node-log line for every worker start and every mini-batch sent), against the
monitor off (`--resource-monitor-interval 0`) at `--logging-level WARNING`. Every job also
writes its sys logs, error summary, processed_mini_batches.csv and HTML report: those are
in both sides, and their whole cost is in bench_overhead's per-mini-batch figure.
Target: slowdown <= 5%.

    .venv/bin/python bench/bench_logging_cost.py
"""

from __future__ import annotations

from benchlib import (
    Contender,
    Result,
    alternate,
    engine_command,
    file_set,
    fresh_dir,
    median,
    report,
    warm,
)

FILES = 100_000
MINI_BATCH_SIZE = 100
PROCESSES = 2
REPEATS = 3
TARGET = 0.05


def main() -> Result:
    print(f"bench_logging_cost: {FILES:,} tiny files, monitor every 1 s + DEBUG vs monitor off + "
          f"WARNING, {REPEATS} alternating rounds")
    folder = file_set("tiny-100k", FILES, lambda i: f"item {i}\n".encode())
    warm(folder)
    full_out, bare_out = fresh_dir("logcost-full"), fresh_dir("logcost-bare")
    full = engine_command("read_lines.py", folder, full_out, MINI_BATCH_SIZE, PROCESSES) + [
        "--resource-monitor-interval", "1", "--logging-level", "DEBUG"]
    bare = engine_command("read_lines.py", folder, bare_out, MINI_BATCH_SIZE, PROCESSES) + [
        "--resource-monitor-interval", "0", "--logging-level", "WARNING"]
    contenders = [Contender("monitor 1 s, DEBUG", lambda: fresh_dir("logcost-full"), full),
                  Contender("monitor off, WARNING", lambda: fresh_dir("logcost-bare"), bare)]
    times = alternate(contenders, REPEATS)
    with_logs, without = (median(times[c.name]) for c in contenders)
    slowdown = with_logs / without - 1
    return Result("logging + monitoring cost (tiny files)", f"{with_logs:.2f} s",
                  f"{without:.2f} s", f"{slowdown:+.1%}", f"<= +{TARGET:.0%}", slowdown <= TARGET,
                  "perf CSVs written: " + str(bool(list((full_out / "logs/perf").rglob("*.csv")))))


if __name__ == "__main__":
    report(main())
