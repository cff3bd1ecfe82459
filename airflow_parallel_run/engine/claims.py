"""Claims: the nodes of a job share its work through small objects in the output location.

The plan is cut into units of consecutive mini-batches, each inside one node's share (the
fixed shares of :func:`~..plan.shard_range`). A node takes a unit by creating
``.parallel_run/claims/<first index>`` with an atomic create (:func:`~..leases.create_exclusive`:
``O_EXCL`` locally, a conditional ``PutObject`` on S3); the claim says where the unit ends, which
node holds it and a renewal counter. The units of a share form a chain, each starting where
the one before ended: the claimer picks the size, and one atomic create decides between two
nodes that race for the same start.

What a node takes (:meth:`ClaimBoard.next_unit`): units of its own share, in order; then the
unclaimed rest of the other shares (the next node's first); then units whose holder stopped
renewing. A unit's size adapts: claiming costs at most about 1% of the time its mini-batches
take (few when they are slow, hundreds when they take a millisecond), and it shrinks as a
share runs out, so that the last units, and the nodes' ends, are close together.

Leases: the holder renews its claims from its supervisor loop by rewriting them with the
counter one higher. Another node takes a unit over when the claim's bytes have not changed
for ``lease_timeout`` seconds of the observer's own monotonic clock: the clocks of two
machines are never compared, so a node whose clock is off takes nothing early. A torn or
corrupt claim is held the same way until it has not changed for ``lease_timeout``. A
take-over is itself an atomic create, of ``<first index>.takeover-<token of the claim taken
over>``, so two nodes taking over one unit cannot both win; the markers stay, and the
reducer counts them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..leases import create_exclusive
from ..plan import shard_range
from ..storage import STATE_DIR, OutputLocation

CLAIMS_DIR = f"{STATE_DIR}/claims"
TAKEOVER = ".takeover-"  # claim name + this + the token of the claim taken over
CLAIM_COST_SHARE = 0.01  # claiming may cost this share of the run time of a unit
LOOK_EVERY = 1.0  # seconds at most between looks at the claims of other nodes
LOOK_COST = 20  # ... and at least this many times what a look costs
LOOK_LEAST = 0.02  # ... and at least this (a few local reads, 50 times a second, while idle)
CLOCK_OFFSET_ENV = "PARALLEL_RUN_CLOCK_OFFSET"  # tests only: this node's clock runs ahead


def claim_rel(start: int) -> str:
    return f"{CLAIMS_DIR}/{start:09d}"


def clock_offset() -> float:
    """Seconds this node's wall clock is set ahead (tests of clock skew set it)."""
    try:
        return float(os.environ.get(CLOCK_OFFSET_ENV) or 0.0)
    except ValueError:
        return 0.0


@dataclass
class Claim:
    """A unit of work, ``range(start, end)``, held by node ``node``."""

    start: int
    end: int
    node: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # this taking of the unit
    beat: int = 0  # one higher at each renewal: what other nodes watch
    done: bool = False
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    renewed: float = 0.0  # wall time of the holder, for people only: never compared
    pace: float = 0.0  # the holder's seconds per mini-batch (0: not known): sizes units
    taken_from: int | None = None  # the node that held it before a take-over

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Claim | None:
        """The claim, or None for bytes that are not one (torn by a crash, or corrupt)."""
        try:
            raw = json.loads(data)
            claim = cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (ValueError, TypeError, KeyError):
            return None
        ok = isinstance(claim.start, int) and isinstance(claim.end, int) and claim.end > claim.start
        return claim if ok else None

    @property
    def indices(self) -> range:
        return range(self.start, self.end)


class Waiting:
    """What :meth:`ClaimBoard.next_unit` returns while other nodes hold units not done."""


WAITING = Waiting()


@dataclass
class _Watched:
    data: bytes
    since: float  # monotonic time this node first saw these bytes


class ClaimBoard:
    """One node's view of the claims of a job: what it holds, and what it watches."""

    def __init__(self, location: OutputLocation, mini_batch_count: int, node_count: int,
                 node_index: int, lease_timeout: float,
                 note: Callable[[str], None] = lambda text: None) -> None:
        self.location = location
        self.node_index = node_index
        self.lease_timeout = float(lease_timeout)
        self.note = note
        self.shares = [shard_range(mini_batch_count, node_count, i) for i in range(node_count)]
        self.frontier = [share.start for share in self.shares]  # the next start not yet seen
        self.share_pace = [0.0 for _ in self.shares]  # the slowest pace claims of a share gave
        own = node_index % node_count
        self.order = [(own + k) % node_count for k in range(node_count)]
        self.held: dict[int, Claim] = {}  # start -> our claim, not done
        self.watching: dict[int, _Watched] = {}  # start -> other nodes' claims, not done
        self.taken_over = 0  # units this node took over from another holder
        self.lost = 0  # units taken from this node (it was slow, not dead)
        self.claim_seconds = 0.0  # the cost of one atomic create, as measured
        self.look_seconds = 0.0  # the cost of a look at the claims of others (the least seen)
        self.batch_seconds = 0.0  # the node's pace: seconds between two mini-batches finished
        self.clock_offset = clock_offset()
        self._looked = -math.inf
        self.idle = False  # next_unit() found nothing to claim: the node waits for others
        self._renewed = time.monotonic()

    # -- sizes -----------------------------------------------------------------------------

    def ran(self, seconds: float) -> None:
        """The node finished a mini-batch ``seconds`` after the one before: units are sized
        from this pace (all its workers together)."""
        if self.batch_seconds == 0.0:
            self.batch_seconds = seconds
        else:
            self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * seconds

    def unit_size(self, share: int, left: int) -> int:
        """Mini-batches in the next unit of ``share``, which has ``left`` unclaimed: enough
        that claiming costs about CLAIM_COST_SHARE of their time at the slowest pace known
        there, and few enough that the share's last units (and the nodes' ends) are close."""
        pace = max(self.batch_seconds, self.share_pace[share])
        if pace <= 0.0:
            return 1  # nothing measured yet: one mini-batch, and measure
        least = math.ceil(self.claim_seconds / (CLAIM_COST_SHARE * pace))
        even = math.ceil(left / (4 * len(self.shares)))  # shrinks as the share runs out
        return max(1, min(least, even))

    # -- what to run next --------------------------------------------------------------------

    def next_unit(self, ahead: bool = False) -> Claim | Waiting | None:
        """A unit this node now holds; WAITING while others hold units not done; None: none left.
        ``ahead``: for a worker still busy, a unit of this node's own share only, and none of
        its last (one per node): those go to the nodes whose workers are free first, so that
        the nodes end within about one mini-batch of each other."""
        if ahead:
            return self._claim_in(self.order[0], ahead=True) or WAITING
        self.idle = False
        for share in self.order:
            claim = self._claim_in(share)
            if claim is not None:
                return claim
        claim = self._take_expired()
        if claim is not None:
            return claim
        self.idle = bool(self.watching)
        return WAITING if self.watching else None

    def all_done(self) -> bool:
        """Every unit is claimed and done, as far as this node can see without claiming (a
        look only: what it saw is seen again by :meth:`next_unit`)."""
        frontier, watching = list(self.frontier), dict(self.watching)
        try:
            for share in self.order:
                while self.frontier[share] < self.shares[share].stop:
                    start = self.frontier[share]
                    data = self.location.read_bytes(claim_rel(start))
                    if data is None or not self._passed(share, start, data, resume=False):
                        return False
            return not self.watching and not self.held
        finally:
            self.frontier, self.watching = frontier, watching

    def _claim_in(self, share: int, ahead: bool = False) -> Claim | None:
        """Walk the chain of ``share`` from where this node last looked; claim its next unit
        (``ahead``: only while more than one unit per node is left)."""
        stop = self.shares[share].stop
        while self.frontier[share] < stop:
            start = self.frontier[share]
            size = self.unit_size(share, stop - start)
            if ahead and stop - start <= size * len(self.shares):
                return None
            mine = Claim(start, min(stop, start + size), self.node_index, pace=self.batch_seconds)
            if self._create(mine):
                self.frontier[share] = mine.end
                return mine
            data = self.location.read_bytes(claim_rel(start))
            if data is None:
                return None  # cleared meanwhile: a new plan
            if not self._passed(share, start, data, resume=True):
                return self.held.get(start)  # resumed, or a torn claim blocks the chain
        return None

    def _passed(self, share: int, start: int, data: bytes, resume: bool) -> bool:
        """Note the claim ``data`` found at ``start``: False when the walk stops there (a torn
        claim, whose end is unknown; or, with ``resume``, this node's own unit, taken back)."""
        found = Claim.from_json(data)
        if found is None:  # torn or corrupt: held until it has not changed for lease_timeout
            self.watching.setdefault(start, _Watched(data, time.monotonic()))
            return False
        self.frontier[share] = found.end
        self.share_pace[share] = max(self.share_pace[share], found.pace)
        if found.done:
            return True
        if resume and found.node == self.node_index:  # this node's task ran before: resume it
            return self._take(start, data, found) is None
        self.watching.setdefault(start, _Watched(data, time.monotonic()))
        return True

    def _create(self, claim: Claim) -> bool:
        claim.renewed = time.time() + self.clock_offset
        started = time.monotonic()
        made = create_exclusive(self.location, claim_rel(claim.start), claim.to_json())
        cost = time.monotonic() - started
        self.claim_seconds = cost if not self.claim_seconds else 0.8 * self.claim_seconds + 0.2 * cost
        if made:
            self.held[claim.start] = claim
        return bool(made)

    def _take_expired(self) -> Claim | None:
        """Look again at the claims of others (at most every LOOK_EVERY s); take one that has
        not changed for lease_timeout."""
        now = time.monotonic()
        if now - self._looked < self._look_every():
            return None
        self._looked = now
        try:
            return self._look_at_watched(now)
        finally:  # the cheapest look: a look that waited for the CPU cost the store no more
            cost = time.monotonic() - now
            self.look_seconds = min(self.look_seconds, cost) if self.look_seconds else cost

    def _look_at_watched(self, now: float) -> Claim | None:
        for start, watched in list(self.watching.items()):
            data = self.location.read_bytes(claim_rel(start))
            if data != watched.data:
                found = Claim.from_json(data) if data is not None else None
                if data is None or (found is not None and (found.done or found.node == self.node_index)):
                    del self.watching[start]  # done, cleared, or ours again
                else:
                    self.watching[start] = _Watched(data, now)
                    if found is not None:  # the holder's pace, renewed: sizes what is left
                        share = self._share_of(start)
                        self.share_pace[share] = max(self.share_pace[share], found.pace)
                continue
            if now - watched.since >= self.lease_timeout:
                taken = self._take(start, data, Claim.from_json(data))
                if taken is not None:
                    return taken
        return None

    def _take(self, start: int, data: bytes, old: Claim | None) -> Claim | None:
        """Take over the unit at ``start`` whose claim is ``data``; None when another node won."""
        token = old.token if old is not None else hashlib.sha256(data).hexdigest()[:32]
        won = create_exclusive(self.location, claim_rel(start) + TAKEOVER + token,
                               str(self.node_index).encode())
        self.watching.pop(start, None)
        if not won:
            return None
        share = self._share_of(start)
        if old is not None:
            end = old.end
        else:  # a torn claim: its end was never known; this node picks one
            left = self.shares[share].stop - start
            end = min(self.shares[share].stop, start + self.unit_size(share, left))
            self.frontier[share] = max(self.frontier[share], end)
        claim = Claim(start, end, self.node_index, beat=(old.beat + 1) if old else 0,
                      renewed=time.time() + self.clock_offset,
                      taken_from=old.node if old is not None else None)
        self.location.write_atomic(claim_rel(start), claim.to_json())
        self.held[start] = claim
        if old is None or old.node != self.node_index:
            self.taken_over += 1
            self.note(f"node {self.node_index + 1} took over mini-batches {start}-{end - 1} from "
                      f"{'a torn claim' if old is None else f'node {old.node + 1}'}: not renewed "
                      f"for {self.lease_timeout:g} s (lease_timeout)")
        else:
            self.note(f"node {self.node_index + 1} resumes its unit {start}-{end - 1}")
        return claim

    def _look_every(self) -> float:
        """How often a node that waits looks at the units others hold: often enough that it
        ends soon after the last one is done; not so often that looking costs much."""
        return min(LOOK_EVERY, self.lease_timeout / 4,
                   max(LOOK_LEAST, LOOK_COST * self.look_seconds))

    def due_in(self) -> float:
        """Seconds until the node's loop should come back: to renew, or to look again."""
        now = time.monotonic()
        due = [self._renewed + self.lease_timeout / 4 - now] if self.held else []
        if self.idle and self.watching:  # a busy node looks when it asks for its next unit
            due.append(self._looked + self._look_every() - now)
        return max(0.02, min(due)) if due else math.inf

    def _share_of(self, start: int) -> int:
        return next(i for i, share in enumerate(self.shares) if start in share)

    # -- leases ------------------------------------------------------------------------------

    def renew_in(self) -> float:
        """Seconds until the claims held should be renewed."""
        return max(0.0, self._renewed + self.lease_timeout / 4 - time.monotonic())

    def renew(self) -> list[Claim]:
        """Renew every claim held, when due; the claims found taken over (lost) are returned."""
        if not self.held or self.renew_in() > 0:
            return []
        self._renewed = time.monotonic()
        lost = []
        for start, claim in list(self.held.items()):
            data = self.location.read_bytes(claim_rel(start))
            current = Claim.from_json(data) if data is not None else None
            if current is None or current.token != claim.token:
                del self.held[start]
                lost.append(claim)
                continue
            claim.beat = current.beat + 1
            claim.pace = self.batch_seconds
            claim.renewed = time.time() + self.clock_offset
            self.location.write_atomic(claim_rel(start), claim.to_json())
        self.lost += len(lost)
        return lost

    def done(self, claim: Claim) -> None:
        """Every mini-batch of ``claim`` has finished here."""
        if self.held.pop(claim.start, None) is None:
            return  # taken over meanwhile: its new holder marks it
        claim.done = True
        claim.renewed = time.time() + self.clock_offset
        self.location.write_atomic(claim_rel(claim.start), claim.to_json())


def count_takeovers(location: OutputLocation) -> int:
    """Units of the job taken over from a holder that stopped renewing."""
    return sum(TAKEOVER in name for name in location.listdir(CLAIMS_DIR))


def clear_claims(location: OutputLocation) -> None:
    """A new plan: the claims of an earlier run hold nothing."""
    location.remove(CLAIMS_DIR)
