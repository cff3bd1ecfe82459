"""W1, many tiny files: 100,000 files of a few bytes, 100 per batch, 2 processes or actors.

Every contender calls bench/scripts/read_lines.py's run() (a line "<name>: <content>" per
file): parallel-run (mini_batch_size 100, process_count_per_node 2); Ray Data
(``map_batches`` on a pool of 2 actors, batches of 100 paths); Dask (a bag of the paths in
partitions of 100 on its local pool of 2 processes). Whole commands, start-up included.
Target: ours at least 1.5x faster than the fastest peer.

    .venv/bin/python bench/peers/w1_tiny_files.py
"""

from __future__ import annotations

import peerlib  # first: it puts bench/ on sys.path
from benchlib import SCRIPTS, engine_command, file_set, warm
from peerlib import OUT, Section, check_lines, engine, peer

FILES = 100_000
BATCH = 100
PROCESSES = 2
TARGET = 1.5
OURS = "ours (parallel-run)"


def main() -> Section:
    folder = file_set("tiny-100k", FILES, lambda i: f"value {i}".encode())
    warm(folder)
    expected = [f"{i:07d}.txt: value {i}".encode() for i in range(FILES)]
    script = SCRIPTS / "read_lines.py"
    ours = OUT / "w1-ours"
    options = ("--batch", str(BATCH))
    contenders = [
        engine(OURS, engine_command(str(script), folder, ours, BATCH, PROCESSES), ours,
               lambda out: check_lines(out, expected, True)),
        peer("Ray Data (2 actors)", "ray", "files", script, folder, OUT / "w1-ray.txt",
             (*options, "--actors", str(PROCESSES)), lambda out: check_lines(out, expected, False)),
        peer("Dask bag (2 processes)", "dask", "files", script, folder, OUT / "w1-dask.txt",
             (*options, "--workers", str(PROCESSES)), lambda out: check_lines(out, expected, True)),
    ]
    rows = peerlib.compare("W1 tiny files", contenders, OURS)
    return Section(f"W1: {FILES:,} tiny files, {BATCH} per batch, {PROCESSES} processes",
                   peerlib.rows_table(rows), [peerlib.speed_verdict(rows, OURS, TARGET)])


if __name__ == "__main__":
    print(main().render())
