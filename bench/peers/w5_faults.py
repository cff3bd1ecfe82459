"""W5, faults: 1% of the items raise and one item hangs forever; what each contender does
with the timeout-like settings it offers.

5,000 files (file i holds i), 10 per batch, 2 processes or actors; scripts/faulty.py's run()
raises on every hundredth item (on every try) and never returns on item 7. Settings:

- ours: ``--run-invocation-timeout 5 --run-max-try 2`` (thresholds left at their defaults);
- Ray Data: failed batches skipped (``max_errored_blocks = -1``), ``max_restarts`` and
  ``max_task_retries`` 1; it has no per-batch timeout;
- Dask: a ``LocalCluster`` of 2 worker processes with ``retries=1`` (only the distributed
  scheduler retries); it has no per-task timeout.

Each runs once (a hung one is killed at 5 minutes): time until the command ends, its exit,
how many of the 4,949 good items its output holds (a batch that fails loses all of its 10
items, so 4,490 is the most a contender that keeps the other batches can hold), lines that
should not be there, and its processes still alive 2 s after it ended.

    .venv/bin/python bench/peers/w5_faults.py
"""

from __future__ import annotations

from dataclasses import dataclass

import peerlib  # first: it puts bench/ on sys.path
from benchlib import engine_command, file_set, fresh_dir, warm
from peerlib import OUT, PEER_SCRIPTS, Section, TreeRun, check_lines, peer_command, run_tree

FILES = 5_000
BATCH = 10
HANG = 7
SCRIPT = PEER_SCRIPTS / "faulty.py"


@dataclass
class FaultRow:
    contender: str
    settings: str
    run: TreeRun
    right: int  # good items in the output
    wrong: int  # lines that are no good item, or a good item again

    def cells(self) -> list[str]:
        left = ", ".join(self.run.left_running) or "none"
        return [self.contender, self.settings, f"{self.run.seconds:.1f}", self.run.outcome,
                f"{self.right:,}", f"{self.wrong:,}", f"{self.run.peak_rss_mb:,.0f}", left]


COLUMNS = ("contender", "settings", "time to end s", "outcome", "good items in output",
           "wrong or duplicated lines", "peak RSS MB", "processes left")


def good_lines() -> list[bytes]:
    return [f"{i:07d}.txt: {i}".encode() for i in range(FILES) if i != HANG and i % 100 != 99]


def main() -> Section:
    folder = file_set("cpu-5k", FILES, lambda i: str(i).encode())
    warm(folder)
    ours = fresh_dir("peers/w5-ours")
    cases = [
        ("ours (parallel-run)", "run_invocation_timeout 5, run_max_try 2",
         [*engine_command(str(SCRIPT), folder, ours, BATCH, 2), "--run-invocation-timeout",
          "5", "--run-max-try", "2"], ours / "parallel_run_step.txt"),
        ("Ray Data (2 actors)", "max_errored_blocks -1, max_restarts 1, max_task_retries 1",
         peer_command("ray", "files", SCRIPT, folder, OUT / "w5-ray.txt", "--batch",
                      str(BATCH), "--actors", "2", "--tolerate-errors", "--retries", "1"),
         OUT / "w5-ray.txt"),
        ("Dask (LocalCluster, 2 processes)", "retries 1",
         peer_command("dask", "files", SCRIPT, folder, OUT / "w5-dask.txt", "--batch",
                      str(BATCH), "--workers", "2", "--scheduler", "distributed",
                      "--retries", "1"), OUT / "w5-dask.txt"),
    ]
    expected = good_lines()
    rows = []
    for name, settings, command, output in cases:
        output.unlink(missing_ok=True)
        print(f"W5 faults: {name}; {peerlib.load_average()}", flush=True)
        run = run_tree(command, OUT / f"w5-{peerlib.slug(name)}.stderr")
        check = check_lines(output, expected, False)
        rows.append(FaultRow(name, settings, run, len(expected) - check.missing,
                             check.unexpected + check.duplicated))
        print(f"    {run.seconds:.1f} s, {run.outcome}, {rows[-1].right:,} good items; "
              f"left running: {rows[-1].cells()[-1]}", flush=True)
    return Section(f"W5: faults, {FILES:,} items, 1% raise, one hangs",
                   peerlib.markdown(COLUMNS, (row.cells() for row in rows)), [])


if __name__ == "__main__":
    print(main().render())
