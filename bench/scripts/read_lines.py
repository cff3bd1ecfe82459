"""Entry script of bench_tiny_files: one line "<name>: <content>" per file."""

import os


def run(mini_batch):
    lines = []
    for path in mini_batch:
        with open(path, encoding="utf-8") as handle:
            lines.append(f"{os.path.basename(path)}: {handle.read()}")
    return lines
