"""Tries lost with their node: a mini-batch's record without its try event gets one, recovered.

A worker stores its mini-batch's record, then its node writes the try's event. A node killed
(SIGKILL) between the two leaves a mini-batch done whose try no log shows. Whoever next reads
the records writes the missing event: the node that resumes the share (its own mini-batches
only), else the reducer. The event is marked recovered; its outcome and counts come from the
record, its process is the one that wrote the record when the record's log names it (else
``unknown``), and its duration is not known. It is written once: a later reader finds it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from . import logs
from .events import TryEvent, event_log, to_line
from .results import OK, Records
from .storage import OutputLocation

UNKNOWN = "unknown"  # the ip and process of a record whose writer is not known


def recover_tries(location: OutputLocation, tries: Iterable[TryEvent], indices: range,
                  node: int = -1) -> list[TryEvent]:
    """Write a recovered event for each OK record among ``indices`` that no ``tries`` event
    logged; the events written. ``node``: the node whose share ``indices`` is (-1: unknown)."""
    logged = {t.mini_batch for t in tries if t.status == OK}
    recovered = []
    with Records(location) as records:
        for index in records.indices():
            if index not in indices or index in logged:
                continue
            record = records.record(index)
            if record is None or record.status != OK:
                continue
            ip, process, pid, at = _writer(records.written_by(index))
            start = record.started_at or at or time.time()
            event = TryEvent(node, ip, process, pid, index, record.tries, OK, record.total,
                             record.succeeded, start, 0.0, 0.0, recovered=True)
            location.append_text(event_log(ip, process), to_line(event))
            location.append_text(logs.sys_node_log(ip, process), event.sys_line())
            recovered.append(event)
    return recovered


def _writer(found: tuple[str, float] | None) -> tuple[str, str, int | None, float]:
    """The ip, process and pid that wrote a record, and when, from its log's name."""
    if found is None:
        return UNKNOWN, UNKNOWN, None, 0.0
    name, at = found
    parts = name.rsplit("-", 3)  # <ip>-<process>-<pid>-<random>: an ip may hold a "-"
    if len(parts) != 4 or not parts[2].isdigit():
        return UNKNOWN, UNKNOWN, None, at
    return parts[0], parts[1], int(parts[2]), at
