"""What a node runs next: failed tries first, then its share of the plan, in plan order.

The plan comes from the plan files (a resumed or assigned shard), straight from the planner
through a :class:`~.feed.PlanFeed` while the plan is still being made, or, when nodes share
the work, unit by unit as the node claims them (:class:`~.claims.ClaimBoard`: its own share
first, then what nobody holds, then what a lost node held). Only :meth:`WorkQueue.next`
hands work out; everything else puts work back or asks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..plan import MiniBatch
from .claims import WAITING, Claim, ClaimBoard
from .feed import PENDING, Pending, PlanFeed
from .messages import RunMiniBatch


@dataclass
class Task:
    """One try of a mini-batch on this node."""

    batch: MiniBatch
    try_number: int = 1
    local_items: list[str] | None = None
    size: int | None = None  # items, once known (a table piece's rows are known once read)
    fetched: bool = False  # its files were copied into the node's cache

    def next_try(self) -> Task:
        return Task(self.batch, self.try_number + 1, self.local_items, self.size, self.fetched)

    def message(self, items: list[str]) -> RunMiniBatch:
        """What the worker is sent: ``items`` are the local paths of the mini-batch's files."""
        return RunMiniBatch(self.batch.index, self.batch.dataset, items, self.try_number,
                            self.batch.piece, versions=self.batch.piece is None and not self.fetched)

    def count_items(self, datasets: dict[str, Any]) -> int:
        """Items of the mini-batch: counted without running it, for failures and logs."""
        if self.size is None:
            self.size = self.batch.known_size
        if self.size is None:  # a CSV / JSON-lines piece: count its lines
            from ..inputs.tabular import TablePiece, count_rows_estimate

            dataset = datasets[self.batch.dataset]
            self.size = count_rows_estimate(TablePiece.from_dict(self.batch.piece or {}),
                                            dataset.options, dataset.storage_options)
        return self.size


class WorkQueue:
    """The node's line of work; only the node's loop uses it."""

    def __init__(self, run_max_try: int, stopping: Callable[[], bool]) -> None:
        """``stopping`` says the node is stopping: nothing more is handed out or retried."""
        self.run_max_try = run_max_try
        self.stopping = stopping
        self._retries: deque[Task] = deque()
        self._plan: Iterator[MiniBatch] = iter(())
        self._feed: PlanFeed | None = None
        self._peeked: MiniBatch | None = None
        self._plan_done = False
        self._board: ClaimBoard | None = None
        self._open_unit: Callable[[Claim], Iterator[MiniBatch]] = lambda claim: iter(())
        self._unit: Claim | None = None
        self._lost: set[int] = set()  # starts of units taken from this node
        self._ahead = False  # next() is asked for a worker that is still busy

    def read_plan(self, batches: Iterator[MiniBatch]) -> None:
        """The shard's mini-batches still to run, from the complete plan."""
        self._plan = batches

    def read_feed(self, feed: PlanFeed) -> None:
        """Mini-batches straight from the planner, while it makes the plan."""
        self._feed = feed

    def read_claims(self, board: ClaimBoard,
                    open_unit: Callable[[Claim], Iterator[MiniBatch]]) -> None:
        """Units claimed from ``board`` as the node needs them; ``open_unit`` gives the
        mini-batches of a unit that are still to run."""
        self._board = board
        self._open_unit = open_unit

    def drop(self, claim: Claim) -> None:
        """A unit was taken over by another node: what is left of it is not handed out."""
        self._lost.add(claim.start)

    @property
    def feeding(self) -> bool:
        return self._feed is not None

    def next(self, ahead: bool = False) -> Task | None:
        """The task to run now, or None: nothing left, or (see :meth:`waiting_for_plan`) not yet.
        ``ahead``: for a worker still busy; a node claims for it no unit of another share, nor
        the last units of its own, so that these go to nodes with a free worker."""
        self._ahead = ahead
        try:
            if not self.has_work():
                return None
        finally:
            self._ahead = False
        if self._retries:
            return self._retries.popleft()
        batch, self._peeked = self._peeked, None
        assert batch is not None
        return Task(batch)

    def has_work(self) -> bool:
        """:meth:`next` would hand out a task."""
        if self.stopping():
            return False
        if self._retries:
            return True
        if self._peeked is None and not self._plan_done:
            taken = self._take()
            if isinstance(taken, Pending):
                return False
            self._peeked = taken
            self._plan_done = taken is None
        return self._peeked is not None

    def known(self, planned: int) -> int:
        """Mini-batches known so far: those fed while the planner feeds, else ``planned``."""
        return self._feed.count if self._feed is not None and not self._feed.closed else planned

    def waiting_for_plan(self) -> bool:
        """The planner may still hand out mini-batches: idle workers wait instead of stopping."""
        return ((self._feed is not None or self._board is not None) and not self._plan_done
                and not self.stopping())

    def retry(self, task: Task) -> bool:
        """A failed try: queue the next one ahead of everything else, if tries are left."""
        if task.try_number >= self.run_max_try or self.stopping():
            return False
        self._retries.appendleft(task.next_try())
        return True

    def put_back(self, task: Task | None) -> None:
        """A task that never started (its worker went away first) is next in line again."""
        if task is not None:
            self._retries.appendleft(task)

    def _take(self) -> MiniBatch | None | Pending:
        if self._board is not None:
            return self._take_claimed(self._board)
        if self._feed is None:
            return next(self._plan, None)
        return self._feed.take()

    def _take_claimed(self, board: ClaimBoard) -> MiniBatch | None | Pending:
        while True:
            lost = self._unit is not None and self._unit.start in self._lost
            batch = None if lost else next(self._plan, None)
            if batch is not None:
                return batch
            unit = board.next_unit(ahead=self._ahead)
            if unit is WAITING:
                return PENDING
            if not isinstance(unit, Claim):
                return None
            self._unit = unit
            self._plan = self._open_unit(unit)
