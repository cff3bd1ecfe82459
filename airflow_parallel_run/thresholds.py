"""Counting and thresholds: what a job has done, and whether it has failed.

``error_threshold`` counts failed items and ``allowed_failed_count`` failed mini-batches over
the whole job; each fails the job as soon as the count goes above it (-1 ignores).
``allowed_failed_percent`` is checked when all mini-batches are done.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from .config import ParallelRunConfig
from .results import MiniBatchRecord
from .storage import STATE_DIR, OutputLocation

COUNTS_DIR = f"{STATE_DIR}/counts"


@dataclass
class Totals:
    mini_batches_done: int = 0
    failed_mini_batches: int = 0
    succeeded_items: int = 0
    failed_items: int = 0

    def add(self, record: MiniBatchRecord) -> None:
        self.mini_batches_done += 1
        self.failed_mini_batches += record.failed_mini_batch
        self.succeeded_items += record.succeeded
        self.failed_items += record.failed

    def __iadd__(self, other: Totals) -> Totals:
        self.mini_batches_done += other.mini_batches_done
        self.failed_mini_batches += other.failed_mini_batches
        self.succeeded_items += other.succeeded_items
        self.failed_items += other.failed_items
        return self


def exceeded_while_running(config: ParallelRunConfig, totals: Totals) -> str | None:
    """The threshold that the counts so far already break, named with its value and count."""
    if config.error_threshold != -1 and totals.failed_items > config.error_threshold:
        return (f"error_threshold exceeded: {totals.failed_items} items failed, "
                f"error_threshold is {config.error_threshold}")
    if config.allowed_failed_count != -1 and totals.failed_mini_batches > config.allowed_failed_count:
        return (f"allowed_failed_count exceeded: {totals.failed_mini_batches} mini-batches failed, "
                f"allowed_failed_count is {config.allowed_failed_count}")
    return None


def final_verdict(config: ParallelRunConfig, totals: Totals, mini_batch_count: int) -> str | None:
    """Why the finished job failed, or None when it succeeded."""
    reason = exceeded_while_running(config, totals)
    if reason:
        return reason
    if mini_batch_count and config.allowed_failed_percent < 100:
        percent = 100.0 * totals.failed_mini_batches / mini_batch_count
        if percent > config.allowed_failed_percent:
            return (f"allowed_failed_percent exceeded: {totals.failed_mini_batches} of "
                    f"{mini_batch_count} mini-batches failed ({percent:.1f}%), "
                    f"allowed_failed_percent is {config.allowed_failed_percent}")
    return None


class SharedCounts:
    """Each node publishes its counts in the output location and reads the others'.

    So a threshold broken on one node stops the others soon after, not at the end.
    """

    def __init__(self, location: OutputLocation, node_index: int) -> None:
        self.location = location
        self.node_index = node_index
        # An object store is asked less often: a LIST and a GET per node each time.
        self.read_interval = 5.0 if location.is_remote else 1.0
        self._others = Totals()
        self._read_at = 0.0

    def publish(self, totals: Totals) -> None:
        self.location.write_json(f"{COUNTS_DIR}/node-{self.node_index}.json", asdict(totals))

    def job_totals(self, mine: Totals, fresh: bool = False) -> Totals:
        now = time.monotonic()
        if fresh or now - self._read_at >= self.read_interval:
            self._read_at = now
            others = Totals()
            for name in self.location.listdir(COUNTS_DIR):
                if name == f"node-{self.node_index}.json" or not name.endswith(".json"):
                    continue
                try:
                    others += Totals(**(self.location.read_json(f"{COUNTS_DIR}/{name}") or {}))
                except (OSError, ValueError, TypeError):
                    continue  # being replaced right now: read it next time
            self._others = others
        total = Totals()
        total += self._others
        total += mine
        return total


def clear_counts(location: OutputLocation) -> None:
    location.remove(COUNTS_DIR)
