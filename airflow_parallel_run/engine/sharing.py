"""The node's side of shared work: the units it claims, what is left of each, their leases.

The node's loop asks :class:`SharedWork` to start (or to find that nothing is left), to
renew its claims now and then, and tells it of each mini-batch that finished; the work
queue pulls the units through :meth:`SharedWork.open_unit`. See claims.py for the claims.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..plan import MiniBatch, iter_plan
from ..results import MiniBatchRecord
from .claims import Claim, ClaimBoard
from .outcomes import Outcomes
from .resume import finished_earlier
from .work_queue import WorkQueue

if TYPE_CHECKING:
    from .node import NodeSpec


class SharedWork:
    """The units one node holds; made by the node when its job shares work."""

    def __init__(self, spec: NodeSpec, outcomes: Outcomes, queue: WorkQueue,
                 note: Callable[[str], None]) -> None:
        self.location = spec.output
        self.node_index = spec.node_index
        self.outcomes = outcomes
        self.queue = queue
        self.note = note
        self.count = spec.plan.mini_batch_count
        self.board = ClaimBoard(spec.output, spec.plan.mini_batch_count, spec.plan.node_count,
                                spec.node_index, float(spec.config.lease_timeout), note)
        self._last_finish: float | None = None
        outcomes.on_finished = self.finished
        self.done_before: dict[int, MiniBatchRecord] = {}
        self.left: dict[int, set[int]] = {}  # unit start -> its mini-batches not finished
        self.unit_of: dict[int, Claim] = {}  # mini-batch -> the unit it belongs to

    def start(self) -> bool:
        """Queue the units to claim; False when every unit is claimed and done already."""
        if self.board.all_done():
            self.note(f"node {self.node_index + 1}: nothing left: every unit of work is claimed "
                      "and done")
            return False
        self.done_before = finished_earlier(self.location, range(self.count), self.node_index,
                                            self.note)
        self.queue.read_claims(self.board, self.open_unit)
        return True

    def open_unit(self, claim: Claim) -> Iterator[MiniBatch]:
        """The mini-batches of a unit just claimed that are still to run."""
        if claim.taken_from is None and claim.beat == 0:  # a fresh claim: earlier runs' records
            done = {i: r for i in claim.indices if (r := self.done_before.get(i)) is not None}
        else:  # taken back or over: what its holder finished since counts too
            done = finished_earlier(self.location, claim.indices, self.node_index, self.note)
        if claim.taken_from in (None, self.node_index) and done:  # others counted their own
            self.outcomes.counted_before(done.values())
        left = {i for i in claim.indices if i not in done}
        if not left:
            self.board.done(claim)
            return iter(())
        self.left[claim.start] = left
        for index in left:
            self.unit_of[index] = claim
        return (b for b in iter_plan(self.location, claim.indices) if b.index in left)

    def finished(self, index: int) -> None:
        """A mini-batch is over (done, or failed after its last try)."""
        now = time.monotonic()
        if self._last_finish is not None:  # the node's pace: a mini-batch per this many seconds
            self.board.ran(now - self._last_finish)
        self._last_finish = now
        claim = self.unit_of.pop(index, None)
        if claim is None:
            return
        left = self.left.get(claim.start, set())
        left.discard(index)
        if not left:
            self.left.pop(claim.start, None)
            self.board.done(claim)

    def renew(self, longest: float) -> float:
        """Renew the claims held when it is time, drop what other nodes took over; the
        seconds (at most ``longest``) the node may wait before it renews or looks again."""
        for claim in self.board.renew():
            self.queue.drop(claim)
            self.note(f"node {self.node_index + 1}: mini-batches {claim.start}-{claim.end - 1} were "
                      "taken over by another node (this one did not renew them in time); "
                      "what it still runs of them runs twice")
        return min(longest, self.board.due_in())
