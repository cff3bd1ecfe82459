"""Mini-batches handed from the planner to a node while the plan is still being made.

For a fresh local job run by ``parallel-run`` the first mini-batch need not wait for the
listing of a million files to end: the planner puts each mini-batch here as it writes it to
the plan, and the node's loop takes them as workers free up (engine/job.py decides when)::

    planner thread --put()--> PlanFeed --take()--> node loop (woken through its pipe)

At most FEED_LIMIT mini-batches wait here: when the planner runs further ahead, the rest
are read from the plan files once the plan is complete (memory stays bounded for a million
files, as the planner's own does).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator

from ..plan import MiniBatch

FEED_LIMIT = 1024  # mini-batches held in memory at most


class Pending:
    """What :meth:`PlanFeed.take` returns while the planner has more to come."""


PENDING = Pending()


class PlanFeed:
    def __init__(self, limit: int | None = None) -> None:
        self._batches: deque[MiniBatch] = deque()
        self._limit = FEED_LIMIT if limit is None else limit
        self._spilled_from: int | None = None  # the first mini-batch left to the plan files
        self._rest: Iterator[MiniBatch] | None = None
        self._closed = False
        self._waiting = False  # the node found the feed empty: the next put() wakes it
        self._wake_fd: int | None = None
        self.count = 0  # mini-batches put so far

    def wake_through(self, fd: int) -> None:
        """The write end of the node's wake-up pipe (non-blocking)."""
        self._wake_fd = fd

    def put(self, batch: MiniBatch) -> None:
        self.count += 1
        if self._spilled_from is None and len(self._batches) >= self._limit:
            self._spilled_from = batch.index
        if self._spilled_from is not None:  # read from the plan once it is complete
            return
        self._batches.append(batch)
        if self._waiting:
            self._nudge()

    def close(self, rest: Callable[[int], Iterator[MiniBatch]] | None = None) -> None:
        """No more puts. ``rest(first)`` reads the mini-batches from index ``first`` on from
        the complete plan; None when planning failed (nothing more is then handed out)."""
        if self._spilled_from is not None and rest is not None:
            self._rest = rest(self._spilled_from)
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
            if self._batches:
                return self._batches.popleft()
            return None if self._rest is None else next(self._rest, None)
        return PENDING

    def _nudge(self) -> None:
        self._waiting = False
        if self._wake_fd is not None:
            try:
                os.write(self._wake_fd, b"f")
            except OSError:  # the pipe is full (the node has a wake-up pending) or closed
                pass
