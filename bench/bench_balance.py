"""Benchmark 6: nodes share the work when one node's share is slow.

Four local nodes of one process each (``parallel-run --node-count 4``), 400 one-file
mini-batches; run() sleeps as long as its file says: 0.2 s for the 100 files of node 0's
fixed share, 0.02 s for the others (10x). Two commands, timed alternately, 3 times each:

- fixed shares (``--work-sharing off``: each node runs its own quarter, as before)
- shared work (the default: nodes claim units from each other)

Ideal: total sleep / 4 = (100 x 0.2 + 300 x 0.02) / 4 = 6.5 s. Targets: shared work at most
1.2x the ideal and at least 2x faster than fixed shares. Wall times are whole commands, so
the start of Python, of 4 nodes and their workers, and the reducer are in them.

    .venv/bin/python bench/bench_balance.py
"""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path

from benchlib import (
    DATA,
    Contender,
    Result,
    alternate_timings,
    engine_command,
    file_set,
    fresh_dir,
    median,
    report,
)

FILES = 400
NODES = 4
SLOW, FAST = 0.2, 0.02
SLOW_FILES = FILES // NODES  # node 0's fixed share
REPEATS = 3
IDEAL = (SLOW_FILES * SLOW + (FILES - SLOW_FILES) * FAST) / NODES


def _run_phase(output: Path) -> tuple[float, float]:
    """From a run's processed_mini_batches.csv: (first start to last end, spread of the
    nodes' last ends), in seconds."""
    with open(output / "logs/sys/job_report/processed_mini_batches.csv") as handle:
        rows = list(csv.DictReader(handle))
    starts = [datetime.fromisoformat(r["start"].replace("Z", "+00:00")).timestamp() for r in rows]
    last: dict[str, float] = {}
    for row, start in zip(rows, starts, strict=True):
        last[row["node"]] = max(last.get(row["node"], 0.0), start + float(row["duration_s"]))
    return max(last.values()) - min(starts), max(last.values()) - min(last.values())


def main() -> Result:
    print(f"bench_balance: {FILES} mini-batches on {NODES} nodes x 1 process; node 0's share "
          f"sleeps {SLOW} s each, the rest {FAST} s; ideal {IDEAL:.2f} s; {REPEATS} rounds")
    load_before = os.getloadavg()[0]
    folder = file_set("balance-400", FILES,
                      lambda i: str(SLOW if i < SLOW_FILES else FAST).encode())

    def command(name: str, sharing: str) -> list[str]:
        return engine_command("sleep_as_told.py", folder, fresh_dir(name), 1, 1) + [
            "--node-count", str(NODES), "--work-sharing", sharing]

    contenders = [
        Contender("fixed shares", lambda: fresh_dir("balance-fixed"),
                  command("balance-fixed", "off")),
        Contender("shared work", lambda: fresh_dir("balance-shared"),
                  command("balance-shared", "on")),
    ]
    timings = alternate_timings(contenders, REPEATS)
    fixed, shared = (median([t.seconds for t in timings[c.name]]) for c in contenders)
    of_ideal, speedup = shared / IDEAL, fixed / shared
    span, ends = _run_phase(DATA / "out" / "balance-shared")
    notes = (f"fixed shares {fixed:.2f} s, shared work {shared:.2f} s, ideal {IDEAL:.2f} s: "
             f"shared = {of_ideal:.2f}x the ideal (target <= 1.2), {speedup:.2f}x faster than "
             "fixed shares (target >= 2)\n"
             f"start-up and reducer (fixed shares' wall time - its {SLOW_FILES * SLOW:g} s of "
             f"sleep): {fixed - SLOW_FILES * SLOW:.2f} s; shared work's last run, from the first "
             f"mini-batch's start to the last one's end: {span:.2f} s = {span / IDEAL:.2f}x the "
             f"ideal; the nodes' last mini-batches ended within {ends:.2f} s of each other\n"
             f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f} "
             f"(on {os.cpu_count()} cores)")
    return Result(f"skewed shares ({FILES} mini-batches, {NODES} nodes)", f"{shared:.2f} s shared",
                  f"{fixed:.2f} s fixed", f"{of_ideal:.2f}x ideal, {speedup:.2f}x faster",
                  "<= 1.2x ideal, >= 2x", of_ideal <= 1.2 and speedup >= 2, notes)


if __name__ == "__main__":
    report(main())
