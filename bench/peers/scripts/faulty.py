"""Entry script of the fault workload: file ``i`` holds ``i``; one line "<name>: <i>" each.

Every hundredth item (``i % 100 == 99``) raises, on every try; item ``HANG`` never returns.
"""

import os
import time

HANG = 7


def run(mini_batch):
    lines = []
    for path in mini_batch:
        with open(path, encoding="utf-8") as handle:
            item = int(handle.read())
        if item == HANG:
            while True:
                time.sleep(3600)
        if item % 100 == 99:
            raise ValueError(f"item {item} is bad")
        lines.append(f"{os.path.basename(path)}: {item}")
    return lines
