"""A small entry script: counts the words of each text file."""

import os

from airflow_parallel_run import EntryScript


def init():
    EntryScript().logger.info("ready to count words")


def run(mini_batch):
    results = []
    for path in mini_batch:
        with open(path, encoding="utf-8") as handle:
            results.append(f"{os.path.basename(path)}: {len(handle.read().split())} words")
    return results
