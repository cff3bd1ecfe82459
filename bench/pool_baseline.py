"""The hand-written baseline: what a user could write without the engine.

    python bench/pool_baseline.py ENTRY_SCRIPT --input DIR --output FILE --chunk N --processes N

Lists the folder (sorted), cuts the paths into chunks of N, runs the entry script's run() on
each chunk in a ``concurrent.futures.ProcessPoolExecutor`` and writes the returned items, one
``str(item)`` per line, to one output file in input order: the engine's append_row output,
without its logs, records, retries or timeouts.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from types import ModuleType


def load(path: str) -> ModuleType:
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so run() pickles by reference to the pool's workers
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("entry_script")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--chunk", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    args = parser.parse_args()
    module = load(args.entry_script)
    paths = [os.path.join(args.input, name) for name in sorted(os.listdir(args.input))]
    chunks = [paths[i:i + args.chunk] for i in range(0, len(paths), args.chunk)]
    with ProcessPoolExecutor(args.processes) as pool, open(args.output, "w") as out:
        for result in pool.map(module.run, chunks):
            out.write("".join(f"{item}\n" for item in result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
