"""What a node's mini-batches came to: its counts, the records of its failures, thresholds.

The node's counts are shared with the other nodes (``SharedCounts``) so that a threshold
broken anywhere stops every node soon after; the records of mini-batches that failed here
are written by the node (a worker writes the records of those it ran to the end).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..config import ParallelRunConfig
from ..results import FAILED, MiniBatchRecord, RecordLog, write_remote_record
from ..storage import LocalLocation, OutputLocation
from ..thresholds import SharedCounts, Totals, exceeded_while_running

Listener = Callable[[int, MiniBatchRecord], None]


class Outcomes:
    """The node's counts of finished mini-batches, and the records of those failed here."""

    def __init__(self, location: OutputLocation, node_index: int, ip: str,
                 on_record: Listener | None, poll: float) -> None:
        """``on_record`` hears of every finished mini-batch; without a failure here, the other
        nodes' counts are read for the thresholds every ``poll`` seconds."""
        self.location = location
        self.node_index = node_index
        self.ip = ip
        self.on_record = on_record
        self.totals = Totals()
        self.shared = SharedCounts(location, node_index)
        self.poll = poll
        self._failed_records: RecordLog | None = None
        self._checked_failures = (0, 0)
        self._checked_at = 0.0
        self.on_finished: Callable[[int], None] | None = None  # the node's shared work hears too

    def counted_before(self, records: Iterable[MiniBatchRecord]) -> None:
        """Mini-batches finished by an earlier run of the node."""
        for record in records:
            self.totals.add(record)
        self.publish()

    def finished(self, record: MiniBatchRecord) -> None:
        """A mini-batch is over."""
        self.totals.add(record)
        if record.failed:
            self.shared.publish(self.totals)
        if self.on_record is not None:
            self.on_record(self.node_index, record)
        if self.on_finished is not None:
            self.on_finished(record.index)

    def failed(self, index: int, total: int, try_number: int) -> MiniBatchRecord:
        """Record a mini-batch failed after its last try."""
        record = MiniBatchRecord(index, FAILED, total, 0, total, try_number)
        if self.location.is_remote:
            write_remote_record(self.location, record.index, record.encode())
        else:
            if self._failed_records is None:
                assert isinstance(self.location, LocalLocation)
                self._failed_records = RecordLog.for_process(
                    self.location, f"{self.ip}-node{self.node_index}")
            self._failed_records.write(record)
        self.finished(record)
        return record

    def publish(self) -> None:
        self.shared.publish(self.totals)

    def job_totals(self, fresh: bool = False) -> Totals:
        return self.shared.job_totals(self.totals, fresh=fresh)

    def broken_threshold(self, config: ParallelRunConfig, note: Callable[[str], None]) -> str | None:
        """Checked after a failure here, and every ``poll`` seconds for the other nodes';
        ``note`` hears of a broken one."""
        now = time.monotonic()
        failures = (self.totals.failed_items, self.totals.failed_mini_batches)
        if failures == self._checked_failures and now - self._checked_at < self.poll:
            return None
        self._checked_failures, self._checked_at = failures, now
        reason = exceeded_while_running(config, self.job_totals())
        if reason:
            note(f"threshold check on node {self.node_index + 1}: {reason}; "
                 "no new mini-batch starts, running ones are stopped")
        return reason

    def close(self) -> None:
        if self._failed_records is not None:
            self._failed_records.close()
