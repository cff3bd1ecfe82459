"""Entry script of bench_cpu_scaling: about 2 ms of pure-Python work per file.

The work is a fixed number of loop steps (not a measured time), seeded by the file's
content, so each run does exactly the same computation. A file holding "<seed> <steps>"
asks for that many steps instead (bench_cluster's heavier files).
"""

import os

STEPS = 28_000  # about 2 ms on a 2020s x86 core


def work(seed: int, steps: int = STEPS) -> int:
    x = seed
    for i in range(steps):
        x = (x * 1103515245 + i) & 0xFFFFFFFF
    return x


def run(mini_batch):
    results = []
    for path in mini_batch:
        with open(path, encoding="utf-8") as handle:
            numbers = [int(n) for n in handle.read().split()]
        results.append(f"{os.path.basename(path)}: {work(*numbers)}")
    return results
