"""``parallel-run``: run an entry script over an input on this machine, with the engine.

Exit status: 0 the job succeeded; 1 it ran and failed (also when a store it uses stopped
answering: running it again resumes); 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from . import logs
from .config import FIELD_NAMES, LOGGING_LEVELS, OUTPUT_ACTIONS, ParallelRunConfig, values_from_text
from .errors import ConfigError, ParallelRunError, StoreUnavailable
from .inputs import FileDataset, SideInput
from .storage import describe_os_error

if TYPE_CHECKING:  # the engine is imported only once the arguments are read
    from .engine.job import JobPlan, Progress

INPUT_TYPES = ("files", "csv", "parquet", "jsonl")
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
# the table options of the command line, and the input types that take each
TABLE_OPTIONS = {"csv_separator": ("csv",), "csv_header": ("csv",), "multiline": ("csv",),
                 "encoding": ("csv", "jsonl")}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"parallel-run: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="parallel-run",
        description="Run an entry script (init/run/shutdown) over mini-batches of an input, "
                    "in parallel on this machine. Arguments after -- go to the entry script.",
    )
    p.add_argument("entry_script", help="the script with run(mini_batch)")
    p.add_argument("--input", action="append", required=True, metavar="PATH",
                   help="file, folder, glob or fsspec URL; repeat for several inputs")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--input-type", choices=INPUT_TYPES,
                   help="files (the default: each file is one item), or the rows of csv, "
                        "parquet or jsonl files")
    p.add_argument("--csv-separator", metavar="CHAR",
                   help="csv: the field separator (','; '\\t' for a tab)")
    p.add_argument("--csv-header", action=argparse.BooleanOptionalAction,
                   help="csv: whether the first line names the columns (yes)")
    p.add_argument("--multiline", action=argparse.BooleanOptionalAction,
                   help="csv: whether quoted fields may hold line breaks (not split); "
                        "--no-multiline: split without looking (default: look at each file's start)")
    p.add_argument("--encoding", help="csv, jsonl: the files' text encoding (utf-8)")
    p.add_argument("--mini-batch-size", help="files per mini-batch (10), or bytes for tables (1MB)")
    p.add_argument("--error-threshold", type=int)
    p.add_argument("--allowed-failed-count", type=int)
    p.add_argument("--allowed-failed-percent")
    p.add_argument("--output-action", choices=OUTPUT_ACTIONS)
    p.add_argument("--append-row-file-name")
    p.add_argument("--append-row-dataframe-header", action="store_true", default=None)
    p.add_argument("--append-row-separator")
    p.add_argument("--node-count", type=int)
    p.add_argument("--process-count-per-node", type=int)
    p.add_argument("--run-invocation-timeout")
    p.add_argument("--run-max-try", type=int)
    p.add_argument("--init-timeout")
    p.add_argument("--logging-level", choices=LOGGING_LEVELS)
    p.add_argument("--partition-keys", help="comma-separated column names (tabular)")
    p.add_argument("--resource-monitor-interval")
    p.add_argument("--worker-memory-limit", type=int, metavar="MB",
                   help="address space per worker process, in MB (default: no limit)")
    p.add_argument("--lease-timeout", help="seconds a node's claim holds without renewal (60)")
    p.add_argument("--work-sharing", choices=("on", "off"),
                   help="on (default): nodes take over each other's units; off: fixed shares")
    p.add_argument("--source-directory")
    p.add_argument("--environment-variable", action="append", default=[], metavar="NAME=VALUE",
                   dest="environment_variables")
    p.add_argument("--secret-env", action="append", default=[], metavar="NAME",
                   help="an environment variable holding a secret: the workers get it, every log "
                        "masks its value; repeat for several")
    p.add_argument("--side-input", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--no-follow-outside", action="store_true",
                   help="skip links that lead outside an input folder (files input)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise ParallelRunError(f"{what} {value!r}: must be NAME=VALUE")
        pairs[name] = rest
    return pairs


def secrets_from_args(ns: argparse.Namespace) -> list[str]:
    """The values masked in every log: those of ``--secret-env`` variables, and those of
    ``--environment-variable`` options whose name looks secret (``API_TOKEN``, ``PASSWORD``)."""
    from .airflow.connections import secret_values  # no Airflow import: names only
    from .masking import MIN_LENGTH

    secrets = secret_values(_pairs(ns.environment_variables, "--environment-variable"))
    for name in ns.secret_env:
        value = os.environ.get(name)
        if value is None:
            raise ParallelRunError(f"--secret-env {name}: no environment variable {name} is set")
        if len(value) < MIN_LENGTH:
            raise ParallelRunError(f"--secret-env {name}: its value has fewer than {MIN_LENGTH} "
                                   "characters, too short to be masked in the logs")
        secrets.append(value)
    return secrets


def make_dataset(input_type: str, path: str, name: str, follow_outside: bool = True,
                 **table_options: Any) -> Any:
    if input_type == "files":
        return FileDataset.from_files(path, name=name, follow_links_outside=follow_outside)
    from .inputs.tabular import TabularDataset

    return TabularDataset.from_format(input_type, path, name=name, **table_options)


def _table_options(ns: argparse.Namespace, input_type: str) -> dict[str, Any]:
    """The table options given, by their dataset parameter names; refused for an input type
    they do not apply to."""
    given = {name: getattr(ns, name) for name in TABLE_OPTIONS if getattr(ns, name) is not None}
    for name in given:
        if input_type not in TABLE_OPTIONS[name]:
            raise ConfigError(f"--{name.replace('_', '-')}: only for --input-type "
                              f"{' or '.join(TABLE_OPTIONS[name])}, not {input_type}")
    options: dict[str, Any] = {}
    if "csv_separator" in given:
        options["separator"] = "\t" if given["csv_separator"] == "\\t" else given["csv_separator"]
    if "csv_header" in given:
        options["header"] = given["csv_header"]
    for name in ("multiline", "encoding"):
        if name in given:
            options[name] = given[name]
    return options


def make_inputs(ns: argparse.Namespace) -> list[Any]:
    """The datasets of the ``--input`` options; a hint on stderr when they look like tables
    but are taken as files."""
    input_type = ns.input_type or "files"
    options = _table_options(ns, input_type)
    if ns.no_follow_outside and input_type != "files":  # tables follow links as files do
        raise ConfigError(f"--no-follow-outside: only for --input-type files, not {input_type}")
    if ns.input_type is None:
        kinds = {TABLE_SUFFIXES.get(os.path.splitext(path.rstrip("/"))[1].lower())
                 for path in ns.input}
        if len(kinds) == 1 and None not in kinds:
            kind = kinds.pop()
            print(f"parallel-run: note: every --input ends in a table suffix, but each file is "
                  f"taken as one item (--input-type files, the default); for their rows use "
                  f"--input-type {kind}", file=sys.stderr)
    return [make_dataset(input_type, path, f"input{i}" if len(ns.input) > 1 else "input",
                         not ns.no_follow_outside, **options)
            for i, path in enumerate(ns.input)]


def config_from_args(ns: argparse.Namespace) -> ParallelRunConfig:
    """The options given, read by their fields' rules (``"2.5"`` -> 2.5 seconds) and checked.

    Integers are read by argparse itself (its refusal names the option); the other strings
    are read as a rendered template would be, so both get the same values and messages.
    """
    given = {name: getattr(ns, name, None) for name in FIELD_NAMES
             if name != "environment_variables"}
    fields = values_from_text({name: value for name, value in given.items() if value is not None})
    if ns.environment_variables:
        fields["environment_variables"] = _pairs(ns.environment_variables, "--environment-variable")
    return ParallelRunConfig(**fields)


class ProgressDisplay:
    """A live line on a terminal; a plain line every ``interval`` seconds otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = float(os.environ.get("PARALLEL_RUN_PROGRESS_SECONDS")
                              or (1.0 if self.tty else 10.0))
        self.progress: Any = None  # a Progress once the plan is made
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, job_plan: JobPlan, progress: Progress) -> None:
        note = " (resuming: finished mini-batches are kept)" if job_plan.resumed else ""
        say(f"parallel-run: {logs.count(job_plan.item_count)} items in {job_plan.mini_batch_count} "
            f"mini-batches on {job_plan.node_count} node(s){note}", self.stream)
        self.progress = progress
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def line(self) -> str:
        p = self.progress
        t = p.totals
        elapsed = max(time.monotonic() - p.started, 1e-9)
        rate = t.mini_batches_done / elapsed
        left = p.mini_batch_count - t.mini_batches_done
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        percent = 100.0 * t.mini_batches_done / p.mini_batch_count if p.mini_batch_count else 100
        bar = ""
        if self.tty:
            filled = int(percent / 5)
            bar = f"[{'#' * filled}{'.' * (20 - filled)}] "
        return (f"{bar}{t.mini_batches_done}/{p.mini_batch_count} mini-batches ({percent:.0f}%), "
                f"{t.succeeded_items} items ok, {t.failed_items} failed, "
                f"{rate:.1f} mini-batches/s, {elapsed:.0f}s elapsed, ETA {eta}")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.tty:
                say(f"\r\033[K{self.line()}", self.stream, end="")
            else:
                say(f"progress: {self.line()}", self.stream)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if self.tty:
                say(f"\r\033[K{self.line()}", self.stream)


def say(text: str, stream: Any, end: str = "\n") -> None:
    """Print to a stream whose reader may be gone (``parallel-run ... | head``): the job goes
    on, and what it prints after that goes nowhere, quietly."""
    try:
        print(text, end=end, file=stream, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())  # also quiets Python's own flush at exit
        os.close(devnull)


def _handle_signals(handler: Any) -> Any:
    """``handler`` for SIGTERM and SIGINT (or a dict of one per signal); the previous ones."""
    signals = (signal.SIGTERM, signal.SIGINT)
    handlers = handler if isinstance(handler, dict) else dict.fromkeys(signals, handler)
    return {sig: signal.signal(sig, handlers[sig]) for sig in signals}


def _on_signal(stop: threading.Event) -> Callable[[int, Any], None]:
    """SIGTERM or Ctrl-C (SIGINT): the job stops as it does at a threshold, and reports; a
    second Ctrl-C stops it at once, without a report."""
    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    return handler


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
    ns = build_parser().parse_args(argv)
    display = None if ns.quiet else ProgressDisplay()
    stop = threading.Event()
    previous = _handle_signals(_on_signal(stop))
    try:
        config = config_from_args(ns)
        inputs = make_inputs(ns)
        side_inputs = [SideInput(path, name=name)
                       for name, path in _pairs(ns.side_input, "--side-input").items()]
        from .engine.job import run_job

        result = run_job(config, inputs, ns.output, arguments=script_args,
                         side_inputs=side_inputs, secrets=secrets_from_args(ns),
                         on_plan=display.start if display else None, stop_event=stop,
                         stat_inputs=False)
    except ParallelRunError as exc:
        say(f"parallel-run: error: {exc}", sys.stderr)
        return 2
    except StoreUnavailable as exc:  # not bad usage: the job ran, and did not finish
        print(f"parallel-run: error: {exc}; run the same command again to resume",
              file=sys.stderr)
        return 1
    except OSError as exc:  # the job ran, and the disk failed it (full, gone read-only)
        print(f"parallel-run: error: the job stopped: {describe_os_error(exc, ns.output)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        say("\nparallel-run: interrupted; run the same command again to resume", sys.stderr)
        return 1
    finally:
        _handle_signals(previous)
        if display is not None:
            display.stop()
    for note in result.notes:
        say(f"parallel-run: {note}", sys.stderr)
    say(result.summary(), sys.stdout)
    return 0 if result.success else 1
