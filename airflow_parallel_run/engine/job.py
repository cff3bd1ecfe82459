"""A whole job on this machine: plan, run every shard (one thread per node), reduce.

This is what ``parallel-run`` does; the Airflow layer runs the same three steps as separate
tasks (planner, mapped nodes, reducer).
"""

from __future__ import annotations

import ast
import glob
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..config import ParallelRunConfig, check_arguments, parse_size
from ..errors import ConfigError, EntryScriptError
from ..inputs import SideInput
from ..plan import (
    JOB_FILE,
    JobPlan,
    MiniBatch,
    adopt_plan,
    iter_plan,
    plan_job,
    script_fingerprint,
)
from ..reduce import JobResult, reduce_job
from ..results import RESULTS_DIR, MiniBatchRecord
from ..storage import STATE_DIR, local_path, open_location
from ..thresholds import Totals, clear_counts
from .feed import PlanFeed
from .node import Node, NodeResult, NodeSpec


@dataclass
class EntryScriptLocation:
    path: str  # absolute
    working_dir: str  # source_directory, or the script's folder


def resolve_entry_script(config: ParallelRunConfig) -> EntryScriptLocation:
    """Find the entry script and check, before any process starts, that it can be run."""
    source = config.source_directory
    if source is not None:
        source = os.path.abspath(source)
        if not os.path.isdir(source):
            raise EntryScriptError(f"source_directory {config.source_directory!r}: no such folder")
        path = os.path.join(source, config.entry_script)
    else:
        path = os.path.abspath(config.entry_script)
    if not os.path.isfile(path):
        where = f" in source_directory {source!r}" if source else ""
        raise EntryScriptError(f"entry_script {config.entry_script!r}: no such file{where}")
    with open(path, "rb") as handle:
        code = handle.read()
    try:
        tree = ast.parse(code, filename=path)
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        raise EntryScriptError(f"entry_script {path}: {type(exc).__name__}{where}: {exc.msg}") from None
    except ValueError as exc:  # e.g. null bytes
        raise EntryScriptError(f"entry_script {path}: cannot be parsed: {exc}") from None
    if "run" not in _top_level_names(tree):
        raise EntryScriptError(
            f"entry_script {path}: defines no run() function; it needs run(mini_batch) "
            "(and may have init() and shutdown())"
        )
    return EntryScriptLocation(path, source or os.path.dirname(path))


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    statements = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try | ast.With):  # names bound under a guard count too
            for block in ("body", "orelse", "finalbody"):
                statements.extend(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                statements.extend(handler.body)
    return names


def fingerprint_arguments(arguments: Sequence[Any]) -> list[str]:
    """Arguments as they count for resume and reuse: a SideInput by its path, not its copy."""
    return [f"SideInput({a.path!r})" if isinstance(a, SideInput) else str(a) for a in arguments]


MIN_TABLE_BYTES = 1024


def check_inputs(config: ParallelRunConfig, inputs: Sequence[Any]) -> None:
    """mini_batch_size and partition_keys must suit the kinds of input."""
    if not inputs:
        raise ConfigError("inputs: give at least one dataset")
    kinds = {getattr(d, "kind", None) for d in inputs}
    if kinds - {"files", "tabular"}:
        raise ConfigError(f"inputs: {inputs!r}: each must be a FileDataset or a TabularDataset")
    if "files" in kinds:
        config.files_per_mini_batch()  # a size in bytes for a file input is an error
        if config.partition_keys:
            raise ConfigError(f"partition_keys = {list(config.partition_keys)}: only for "
                              "tabular inputs (TabularDataset), not for files")
    if "tabular" in kinds and config.mini_batch_size is not None:
        number, has_unit = parse_size(config.mini_batch_size)
        if not has_unit and number < MIN_TABLE_BYTES:
            raise ConfigError(
                f"mini_batch_size = {config.mini_batch_size!r}: for a tabular input it is a size "
                f"in bytes (at least {MIN_TABLE_BYTES}), not a count of rows; write e.g. '1MB'")


class Job:
    """What the user asked for, checked: config (rendered), inputs, output, arguments, side inputs.

    Made once per process that takes part (the CLI; each Airflow task); cheap to make.
    """

    def __init__(self, config: ParallelRunConfig, inputs: Sequence[Any], output: str,
                 arguments: Sequence[Any] | None = None,
                 side_inputs: Sequence[SideInput] | None = None,
                 output_storage_options: dict[str, Any] | None = None,
                 secrets: Sequence[str] = (), stat_inputs: bool = True) -> None:
        """``stat_inputs=False``: local input files are not stat'ed while planning (much faster
        for many small files); whether a resumed run's finished mini-batches still match their
        files is then checked by the node, from the sizes and times the workers recorded."""
        self.secrets = list(secrets)
        self.stat_inputs = stat_inputs
        self.config = config.rendered()
        self.inputs = list(inputs)
        self.arguments = check_arguments(list(arguments or []))
        self.side_inputs = list(side_inputs or [])
        for arg in self.arguments:
            if isinstance(arg, SideInput) and arg.name not in {s.name for s in self.side_inputs}:
                self.side_inputs.append(arg)
        self.script = resolve_entry_script(self.config)
        self.location = open_location(output, output_storage_options)
        if self.location.is_remote:
            self.location.check_writable()
        for side in self.side_inputs:
            side.check()
        check_inputs(self.config, self.inputs)
        names = [d.name for d in self.inputs]
        if len(set(names)) != len(names):
            raise ConfigError(f"inputs: names must differ, got {names}")


def plan(job: Job, on_batch: Callable[[MiniBatch], None] | None = None) -> JobPlan:
    """List the inputs into a plan in the output location; resume an identical earlier run.
    ``on_batch`` hears of each mini-batch as soon as it is planned."""
    started = time.time()
    config, location = job.config, job.location
    location.makedirs()
    if location.read_json(JOB_FILE) is None:
        # Records without a job are left by a run stopped while it was still planning (its
        # node ran mini-batches as they were planned): they belong to no plan, and must not
        # pass for this run's results.
        location.remove(RESULTS_DIR)
    base = script_fingerprint(config, job.script.path,
                              config.source_directory and job.script.working_dir,
                              fingerprint_arguments(job.arguments), location.display())
    summary = plan_job(job.inputs, config, location, base,
                       note=lambda text: location.append_text(logs.MASTER_ROLE, logs.line(text)),
                       stats=job.stat_inputs, on_batch=on_batch)
    resumed = adopt_plan(location, summary)
    clear_counts(location)
    node_count = max(1, min(int(config.node_count), summary.mini_batch_count))
    location.append_text(logs.MASTER_ROLE, logs.line(
        f"planned {logs.count(summary.item_count)} items in {summary.mini_batch_count} mini-batches "
        f"from {len(job.inputs)} input(s) in {summary.planning_seconds:.2f} s; {node_count} node(s) x "
        f"{config.process_count_per_node} process(es); "
        + ("resuming an earlier run of the same job" if resumed else "fresh run")))
    return JobPlan(str(location.url), summary.mini_batch_count, summary.item_count, node_count,
                   summary.fingerprint, resumed, started)


def make_node(job: Job, job_plan: JobPlan | None, node_index: int,
              on_record: Callable[[int, MiniBatchRecord], None] | None = None,
              on_tick: Callable[[], None] | None = None) -> Node:
    spec = NodeSpec(config=job.config, plan=job_plan, entry_script=job.script.path,
                    working_dir=job.script.working_dir, arguments=job.arguments,
                    output=job.location, node_index=node_index,
                    datasets={d.name: d for d in job.inputs}, side_inputs=job.side_inputs,
                    secrets=job.secrets)
    indices = job_plan.shard(node_index) if job_plan is not None else range(0)
    return Node(spec, indices, on_record, on_tick)


def reduce(job: Job, job_plan: JobPlan, node_results: Sequence[NodeResult | None]) -> JobResult:
    """Judge the job from its records; a node that did not report counts against it."""
    reasons = [r.stop_reason for r in node_results if r is not None and r.stop_reason]
    if any(r is None for r in node_results):
        reasons.append("a node did not report its result")
    if any(r is not None and r.aborted for r in node_results):
        reasons.append("the job was interrupted before it finished; run it again to resume")
    result = reduce_job(job.location, job.config, job_plan, reasons)
    if job_plan.mini_batch_count == 0:
        result.notes.append("the input is empty: nothing to do")
    return result


def _can_start_early(job: Job) -> bool:
    """Workers may start before planning ends for local inputs into a fresh local output,
    once each input is known to exist (so a refused job runs no script code). Not with
    partition keys: their planning reads the key columns and may refuse them."""
    if job.location.is_remote or job.location.read_json(JOB_FILE) is not None:
        return False
    if job.config.partition_keys:
        return False
    for dataset in job.inputs:
        if dataset.remote:
            return False
        for spec in dataset.paths:
            path = os.path.expanduser(local_path(spec))
            if not (os.path.exists(path) or next(glob.iglob(path, recursive=True), None)):
                return False
    return True


def _discard(nodes: Sequence[Node], threads: Sequence[threading.Thread] = ()) -> None:
    """Nodes started early for a job that will not run: their workers are stopped (by the
    node's own thread where it already runs)."""
    for node in nodes:
        node.abort()
    for thread in threads:
        thread.join()
    for node in nodes[len(threads):]:
        node.run()


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


def run_job(
    config: ParallelRunConfig,
    inputs: Sequence[Any],
    output: str,
    arguments: Sequence[Any] | None = None,
    side_inputs: Sequence[SideInput] | None = None,
    on_plan: Callable[[JobPlan, Progress], None] | None = None,
    stop_event: threading.Event | None = None,
    output_storage_options: dict[str, Any] | None = None,
    secrets: Sequence[str] = (),
    stat_inputs: bool = True,
) -> JobResult:
    """Plan, run every node on this machine (a thread each), reduce.

    Raises ParallelRunError (ConfigError, InputError, EntryScriptError) on bad input.
    """
    job = Job(config, inputs, output, arguments, side_inputs, output_storage_options, secrets,
              stat_inputs)
    job.location.makedirs()  # a clear error (an output that is a file) before anything starts
    early: list[Node] = []
    if _can_start_early(job):
        # A fresh local output: the workers start (and import, and init()) while we plan.
        early = [make_node(job, None, i) for i in range(int(job.config.node_count))]
        for node in early:
            node.start_early()
    # One node owns every mini-batch: it runs them while the planner still lists the input.
    feed = PlanFeed() if len(early) == 1 and not job.location.listdir(RESULTS_DIR) else None
    progress = Progress()
    nodes: list[Node] = []
    results: list[NodeResult | None] = []
    threads: list[threading.Thread] = []

    def run_node(i: int) -> None:
        try:
            results[i] = nodes[i].run()
        except Exception as exc:  # a bug of ours: the job fails with it, the others go on
            job.location.append_text(logs.MASTER_ROLE, logs.line(
                f"node {i} failed:\n{traceback.format_exc()}"))
            results[i] = NodeResult(i, Totals(), f"node {i} failed: {type(exc).__name__}: {exc}")

    def start(more: list[Node]) -> None:
        for node in more:
            nodes.append(node)
            results.append(None)
            threads.append(threading.Thread(target=run_node, args=(len(nodes) - 1,),
                                            name=f"node-{len(nodes) - 1}", daemon=True))
            threads[-1].start()

    if feed is not None:
        early[0].stream(feed, progress)
        start(early)
    try:
        job_plan = plan(job, feed.put if feed is not None else None)
    except BaseException:
        if feed is not None:
            feed.close()
        if early:  # the output held no job: leave it as it was
            _discard(early, threads)
            job.location.remove("logs")
            job.location.remove(STATE_DIR)
        raise
    if feed is not None:  # what the feed did not hold comes from the plan files
        feed.close(lambda first: iter_plan(job.location, range(first, job_plan.mini_batch_count)))
    progress.planned(job_plan)
    if on_plan is not None:
        on_plan(job_plan, progress)
    if job_plan.mini_batch_count == 0 and feed is None:
        _discard(early)
        return reduce(job, job_plan, [])
    every = early or [make_node(job, job_plan, i) for i in range(job_plan.node_count)]
    for i, node in enumerate(every):
        node.assign(job_plan, job_plan.shard(i) if i < job_plan.node_count else range(0),
                    progress)
    start([n for n in every if n not in nodes])  # the fed node runs already
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.2)
            if stop_event is not None and stop_event.is_set():
                for node in nodes:
                    node.abort()
                stop_event = None
    except BaseException:
        for node in nodes:
            node.abort()
        for thread in threads:
            thread.join()
        raise
    return reduce(job, job_plan, results)
