"""Mini-batches handed from the planner to a node while the plan is still being made.

For a fresh local job run by ``parallel-run`` the first mini-batch need not wait for the
listing of a million files to end: the planner puts each mini-batch here as it writes it to
the plan, and the node's loop takes them as workers free up (engine/job.py decides when)::

    planner thread --put()--> PlanFeed --take()--> node loop (woken through its pipe)
"""

from __future__ import annotations

import os
from collections import deque

from ..plan import MiniBatch


class Pending:
    """What :meth:`PlanFeed.take` returns while the planner has more to come."""


PENDING = Pending()


class PlanFeed:
    def __init__(self) -> None:
        self._batches: deque[MiniBatch] = deque()
        self._closed = False
        self._waiting = False  # the node found the feed empty: the next put() wakes it
        self._wake_fd: int | None = None

    def wake_through(self, fd: int) -> None:
        """The write end of the node's wake-up pipe (non-blocking)."""
        self._wake_fd = fd

    def put(self, batch: MiniBatch) -> None:
        self._batches.append(batch)
        if self._waiting:
            self._nudge()

    def close(self) -> None:
        """The plan is complete (or planning failed): no more mini-batches."""
        self._closed = True
        self._nudge()

    @property
    def closed(self) -> bool:
        return self._closed

    def take(self) -> MiniBatch | None | Pending:
        """The next mini-batch, None when the plan is complete and all are taken, else PENDING."""
        self._waiting = True  # before looking: a put() between the look and the return wakes us
        if self._batches:
            self._waiting = False
            return self._batches.popleft()
        if self._closed:  # closed after the last put: look once more
            return self._batches.popleft() if self._batches else None
        return PENDING

    def _nudge(self) -> None:
        self._waiting = False
        if self._wake_fd is not None:
            try:
                os.write(self._wake_fd, b"f")
            except OSError:  # the pipe is full (the node has a wake-up pending) or closed
                pass
