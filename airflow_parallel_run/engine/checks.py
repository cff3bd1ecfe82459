"""What a job is given, checked before any process starts: the entry script and the inputs.

Each check raises a ParallelRunError whose message names the field or file, the value and
what to do, so that a refused job has run no script code and written nothing.
"""

from __future__ import annotations

import ast
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import ParallelRunConfig, parse_size
from ..errors import ConfigError, EntryScriptError
from ..storage import is_remote_url, local_path


@dataclass
class EntryScriptLocation:
    """Where the entry script is, and the folder its workers start in."""

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


def check_output_outside_inputs(output: str, inputs: Sequence[Any]) -> None:
    """An output folder in an input folder (or the same) would be read as input by this run
    or the next: refused. A pattern's folder is its part before the first wildcard."""
    out = _comparable(output)
    for dataset in inputs:
        for spec in getattr(dataset, "paths", []):
            folder = _comparable(input_folder(spec))
            if out == folder or out.startswith(folder.rstrip("/") + "/"):
                raise ConfigError(f"output {output!r} is input {spec!r} or inside it: its "
                                  "files would become input; choose an output folder outside "
                                  "the input")


def input_folder(spec: str) -> str:
    """The folder a pattern starts from (``in/**/*.csv`` -> ``in``); a path as it is."""
    parts = spec.split("/")
    for number, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            return "/".join(parts[:number]) or "/"
    return spec


def _comparable(url: str) -> str:
    """A location as one spelling: a local path resolved (``..``, links, a trailing slash),
    a URL normalised the same way without touching the store."""
    if is_remote_url(url):
        scheme, _, path = url.partition("://")
        return f"{scheme}://{posixpath.normpath('/' + path)}"
    return os.path.realpath(os.path.expanduser(local_path(url)))


PROCESSES_PER_CPU = 16  # more workers than this per CPU only thrash the node


def check_node_machine(config: ParallelRunConfig) -> None:
    """Settings that cannot make sense on this machine, refused before a worker starts (the
    config itself may have been made on another machine, with other CPUs)."""
    cpus = len(os.sched_getaffinity(0))
    limit = PROCESSES_PER_CPU * cpus
    if config.process_count_per_node > limit:
        raise ConfigError(
            f"process_count_per_node = {config.process_count_per_node}: must be at most "
            f"{PROCESSES_PER_CPU} x the node's CPUs = {limit} ({cpus} CPUs here)")
