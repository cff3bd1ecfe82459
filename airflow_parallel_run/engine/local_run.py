"""Every node of a job on this machine, a thread each: what ``parallel-run`` runs.

For a fresh local job the workers need not wait for the plan: they start (import the
script, run ``init()``) while the planner lists the input, and a single node takes each
mini-batch straight from the planner::

    planner --put()--> PlanFeed --> node 0 (thread)       early start, one node: fed
    plan files ------------------> node k (thread each)   otherwise: its shard once planned
                                     |
                                     +--records--> Progress (read by the CLI's display)

Airflow runs the same nodes as separate tasks instead (airflow/tasks.py), without any of this.
"""

from __future__ import annotations

import contextlib
import glob
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import logs
from ..errors import StoreUnavailable
from ..plan import JOB_FILE, JobPlan, MiniBatch, iter_plan
from ..results import RESULTS_DIR, MiniBatchRecord
from ..storage import describe_os_error, local_path
from ..thresholds import Totals
from .feed import PlanFeed
from .node import Node, NodeResult

if TYPE_CHECKING:
    from .job import Job

WAIT_SECONDS = 0.2  # how often the waiting thread looks at the stop event


class Progress:
    """Counts mini-batches as nodes finish them; thread-safe; read by the CLI's display.
    Made before the plan is complete when the planner feeds a node: :meth:`planned` then
    gives the counts."""

    def __init__(self, job_plan: JobPlan | None = None) -> None:
        self.mini_batch_count = 0
        self.item_count: int | None = None
        self.totals = Totals()
        self.started = time.monotonic()
        self._lock = threading.Lock()
        if job_plan is not None:
            self.planned(job_plan)

    def planned(self, job_plan: JobPlan) -> None:
        self.mini_batch_count = job_plan.mini_batch_count
        self.item_count = job_plan.item_count

    def __call__(self, node_index: int, record: MiniBatchRecord) -> None:
        with self._lock:
            self.totals.add(record)


def can_start_early(job: Job) -> bool:
    """Workers may start before planning ends for local inputs into a fresh local output,
    once each input is known to exist (so a refused job runs no script code). Not with
    partition keys: their planning reads the key columns and may refuse them."""
    if job.location.is_remote or job.location.read_json(JOB_FILE) is not None:
        return False
    if job.config.partition_keys:
        return False
    return all(_exists_locally(dataset) for dataset in job.inputs)


def _exists_locally(dataset: Any) -> bool:
    if dataset.remote:
        return False
    for spec in dataset.paths:
        path = os.path.expanduser(local_path(spec))
        if not (os.path.exists(path) or next(glob.iglob(path, recursive=True), None)):
            return False
    return True


class LocalRun:
    """The nodes of one job on this machine, each on a thread of its own.

    Made before planning: nodes may start early (and one may be fed by the planner). Then
    :meth:`run` once the plan is made, or :meth:`planning_failed` when it could not be.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.progress = Progress()
        self.nodes: list[Node] = []  # those with a thread
        self.results: list[NodeResult | None] = []
        self.threads: list[threading.Thread] = []
        self.early: list[Node] = []
        self.store_down: StoreUnavailable | None = None  # a node's store stopped answering
        self.feed: PlanFeed | None = None
        # One node owns every mini-batch of a fresh local output: its workers start (and
        # import, and init()) while we plan, and it runs mini-batches as they are listed.
        # Several nodes wait for the plan: only then is it known how many have work.
        if (int(job.config.node_count) == 1 and can_start_early(job)
                and not job.location.listdir(RESULTS_DIR)):
            self.feed = PlanFeed()
            self.early = [job.make_node(None, 0)]
            self.early[0].stream(self.feed, self.progress)
            self.early[0].start_early()
            self._start(self.early)

    @property
    def on_batch(self) -> Callable[[MiniBatch], None] | None:
        """What the planner hands each mini-batch to as soon as it is planned."""
        return self.feed.put if self.feed is not None else None

    def planning_failed(self) -> None:
        """Stop what started early; the output held no job: leave it as it was."""
        if self.feed is not None:
            self.feed.close()
        if self.early:
            self._discard()
            self.job.clear_state(with_logs=True)

    def planned(self, job_plan: JobPlan) -> None:
        if self.feed is not None:  # what the feed did not hold comes from the plan files
            self.feed.close(lambda first: iter_plan(self.job.location,
                                                    range(first, job_plan.mini_batch_count)))
        self.progress.planned(job_plan)

    def run(self, job_plan: JobPlan, stop_event: threading.Event | None = None,
            ) -> list[NodeResult | None] | None:
        """Every node's result, in node order; None when the job had nothing to run.
        Raises StoreUnavailable when a node's store stopped answering: nothing is judged
        then, as nothing can be read (a later run resumes)."""
        if job_plan.mini_batch_count == 0 and self.feed is None:
            self._discard()
            return None
        every = self.early or [self.job.make_node(job_plan, i)
                               for i in range(job_plan.node_count)]
        self._assign(every, job_plan)
        self._start([n for n in every if n not in self.nodes])  # the fed node runs already
        try:
            self._wait(stop_event)
        except BaseException:
            self._abort()
            for thread in self.threads:
                thread.join()
            raise
        if self.store_down is not None:
            raise self.store_down
        return self.results

    def _assign(self, nodes: Sequence[Node], job_plan: JobPlan) -> None:
        """Each node its shard; nodes started early beyond the plan's node count get none."""
        for i, node in enumerate(nodes):
            node.assign(job_plan, job_plan.shard(i) if i < job_plan.node_count else range(0),
                        self.progress)

    def _start(self, more: Sequence[Node]) -> None:
        for node in more:
            index = len(self.nodes)
            self.nodes.append(node)
            self.results.append(None)
            thread = threading.Thread(target=self._run_node, args=(index,),
                                      name=f"node-{index}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run_node(self, i: int) -> None:
        try:
            self.results[i] = self.nodes[i].run()
        except StoreUnavailable as exc:  # the other nodes cannot go on either: stop them
            self.store_down = exc
            self.results[i] = NodeResult(i, Totals(), str(exc))
            self._abort()
        except OSError as exc:  # a full disk: the job fails with one line that says so
            why = describe_os_error(exc, self.job.location.display())
            with contextlib.suppress(OSError):
                self.job.location.append_text(logs.MASTER_ROLE, logs.line(
                    f"node {i + 1} failed: {why}\n{traceback.format_exc()}"))
            self.results[i] = NodeResult(i, Totals(), f"node {i + 1} failed: {why}")
        except Exception as exc:  # a bug of ours: the job fails with it, the others go on
            self.results[i] = NodeResult(i, Totals(),
                                         f"node {i + 1} failed: {type(exc).__name__}: {exc}")
            with contextlib.suppress(StoreUnavailable):  # the store is down too: told anyway
                self.job.location.append_text(logs.MASTER_ROLE, logs.line(
                    f"node {i + 1} failed:\n{traceback.format_exc()}"))

    def _wait(self, stop_event: threading.Event | None) -> None:
        """Until every node thread ends; a stop event set meanwhile aborts the nodes once."""
        while any(t.is_alive() for t in self.threads):
            for thread in self.threads:
                thread.join(WAIT_SECONDS)
            if stop_event is not None and stop_event.is_set():
                self._abort()
                stop_event = None

    def _abort(self) -> None:
        for node in self.nodes:
            node.abort()

    def _discard(self) -> None:
        """Nodes started early for a job that will not run: their workers are stopped (by the
        node's own thread where it already runs)."""
        for node in self.early:
            node.abort()
        for thread in self.threads:
            thread.join()
        for node in self.early[len(self.threads):]:
            node.run()
