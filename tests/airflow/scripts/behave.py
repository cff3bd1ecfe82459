"""Entry script of the Airflow tests: each input file's text says what run() does with it.

    ok ...        returns "<file>: <text>"
    fail          run() raises
    sleep S       sleeps S seconds first
    sleep-once S  sleeps S seconds the first time only (a node task that hangs, then its
                  units run elsewhere)
    warn ...      logs a WARNING through EntryScript().logger, then returns like ok

Every run() call appends "<mini-batch index> <worker pid> <node task pid>" to calls.log in the
output folder, so a test can count calls and find the processes.
"""

import os
import time

from airflow_parallel_run import EntryScript


def init():
    EntryScript().logger.info("init in pid %d", os.getpid())


def run(mini_batch, context):
    with open(os.path.join(EntryScript().output_dir, "calls.log"), "a") as calls:
        calls.write(f"{context.minibatch_index} {os.getpid()} {os.getppid()}\n")
    results = []
    for path in mini_batch:
        with open(path) as handle:
            text = handle.read().strip()
        if text == "fail":
            raise ValueError(f"{os.path.basename(path)} asks to fail")
        if text.startswith("warn"):
            EntryScript().logger.warning("%s says %s", os.path.basename(path), text)
        if text.startswith("sleep-once"):
            mark = os.path.join(EntryScript().output_dir, f"slept-{os.path.basename(path)}")
            if not os.path.exists(mark):
                open(mark, "w").close()
                time.sleep(float(text.split()[1]))
        elif text.startswith("sleep"):
            time.sleep(float(text.split()[1]))
        results.append(f"{os.path.basename(path)}: {text}")
    return results
