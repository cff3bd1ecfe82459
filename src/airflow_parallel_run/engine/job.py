"""A whole job on this machine: plan, run every shard (one thread per node), reduce.

This is what ``parallel-run`` does; the Airflow layer runs the same three steps as separate
tasks (planner, mapped nodes, reducer).
"""

from __future__ import annotations

import ast
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..config import ParallelRunConfig, check_arguments
from ..errors import EntryScriptError
from ..inputs import SideInput
from ..plan import PlanSummary, adopt_plan, plan_job, script_fingerprint, shard_range
from ..reduce import JobResult, reduce_job, write_job_result
from ..results import MiniBatchRecord
from ..storage import OutputLocation
from ..thresholds import Totals, clear_counts
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
        raise EntryScriptError(
            f"entry_script {path}: {type(exc).__name__} at line {exc.lineno}: {exc.msg}"
        ) from None
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


def resolve_arguments(arguments: Sequence[Any], side_inputs: dict[str, str],
                      objects: Sequence[SideInput], cache_dir: str) -> list[str]:
    """SideInput objects in ``arguments`` become their local paths; everything else a str."""
    resolved = []
    for arg in arguments:
        if isinstance(arg, SideInput):
            if arg.name not in side_inputs:
                side_inputs[arg.name] = arg.fetch(cache_dir)
            resolved.append(side_inputs[arg.name])
        else:
            resolved.append(str(arg))
    return resolved


class Progress:
    """Counts mini-batches as nodes finish them; thread-safe; read by the CLI's display."""

    def __init__(self, mini_batch_count: int, item_count: int) -> None:
        self.mini_batch_count = mini_batch_count
        self.item_count = item_count
        self.totals = Totals()
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, node_index: int, record: MiniBatchRecord) -> None:
        with self._lock:
            self.totals.add(record)


def run_job(
    config: ParallelRunConfig,
    inputs: Sequence[Any],
    output: str,
    arguments: Sequence[Any] | None = None,
    side_inputs: Sequence[SideInput] | None = None,
    on_plan: Callable[[PlanSummary, Progress, bool], None] | None = None,
    stop_event: threading.Event | None = None,
) -> JobResult:
    """Plan, run every node on this machine, reduce. Raises ParallelRunError on bad input."""
    started = time.time()
    config = config.rendered()
    args = check_arguments(arguments)
    script = resolve_entry_script(config)
    location = OutputLocation(output)
    location.makedirs()
    config.files_per_mini_batch()  # a size in bytes for a file input is a configuration error

    cache_dir = str(location.path(".parallel_run/side_inputs"))
    side_paths: dict[str, str] = {}
    for side in side_inputs or []:
        side_paths[side.name] = side.fetch(cache_dir)
    resolved_args = resolve_arguments(args, side_paths, list(side_inputs or []), cache_dir)

    base = script_fingerprint(config, script.path, config.source_directory and script.working_dir,
                              resolved_args, str(location.root))
    summary = plan_job(inputs, config, location, base)
    resumed = adopt_plan(location, summary)
    clear_counts(location)
    node_count = max(1, min(int(config.node_count), summary.mini_batch_count))
    location.append_text(logs.MASTER_ROLE, logs.line(
        f"planned {summary.item_count} items in {summary.mini_batch_count} mini-batches "
        f"from {len(inputs)} input(s) in {summary.planning_seconds:.2f} s; {node_count} node(s) x "
        f"{config.process_count_per_node} process(es); "
        + ("resuming an earlier run of the same job" if resumed else "fresh run")))
    progress = Progress(summary.mini_batch_count, summary.item_count)
    if on_plan is not None:
        on_plan(summary, progress, resumed)

    if summary.mini_batch_count == 0:
        result = reduce_job(location, config, 0, 0, [], started, resumed)
        result.notes.append("the input is empty: nothing to do")
        write_job_result(location, result)
        return result

    datasets = {d.name: d for d in inputs}
    nodes = []
    for index in range(node_count):
        spec = NodeSpec(config=config, entry_script=script.path, working_dir=script.working_dir,
                        arguments=resolved_args, output=location, node_index=index,
                        datasets=datasets, side_inputs=side_paths)
        nodes.append(Node(spec, shard_range(summary.mini_batch_count, node_count, index), progress))
    results: list[NodeResult | None] = [None] * node_count

    def run_node(i: int) -> None:
        results[i] = nodes[i].run()

    threads = [threading.Thread(target=run_node, args=(i,), name=f"node-{i}", daemon=True)
               for i in range(node_count)]
    for thread in threads:
        thread.start()
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
    reasons = [r.stop_reason for r in results if r is not None and r.stop_reason]
    if any(r is None or r.aborted for r in results):
        reasons.append("the job was interrupted before it finished; run it again to resume")
    return reduce_job(location, config, summary.mini_batch_count, summary.item_count, reasons,
                      started, resumed)
