"""``parallel-run``: run an entry script over an input on this machine, with the engine.

Exit status: 0 the job succeeded; 1 it ran and failed; 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, NoReturn

from . import logs
from .config import FIELD_NAMES, LOGGING_LEVELS, OUTPUT_ACTIONS, ParallelRunConfig, values_from_text
from .errors import ParallelRunError
from .inputs import FileDataset, SideInput

if TYPE_CHECKING:  # the engine is imported only once the arguments are read
    from .engine.job import JobPlan, Progress

INPUT_TYPES = ("files", "csv", "parquet", "jsonl")


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
    p.add_argument("--input-type", choices=INPUT_TYPES, default="files")
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
    p.add_argument("--lease-timeout", help="seconds a node's claim holds without renewal (60)")
    p.add_argument("--work-sharing", choices=("on", "off"),
                   help="on (default): nodes take over each other's units; off: fixed shares")
    p.add_argument("--source-directory")
    p.add_argument("--environment-variable", action="append", default=[], metavar="NAME=VALUE",
                   dest="environment_variables")
    p.add_argument("--side-input", action="append", default=[], metavar="NAME=PATH")
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


def make_dataset(input_type: str, path: str, name: str) -> Any:
    if input_type == "files":
        return FileDataset.from_files(path, name=name)
    from .inputs.tabular import TabularDataset

    return TabularDataset.from_format(input_type, path, name=name)


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
        print(f"parallel-run: {logs.count(job_plan.item_count)} items in {job_plan.mini_batch_count} "
              f"mini-batches on {job_plan.node_count} node(s){note}", file=self.stream, flush=True)
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
                print(f"\r\033[K{self.line()}", end="", file=self.stream, flush=True)
            else:
                print(f"progress: {self.line()}", file=self.stream, flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if self.tty:
                print(f"\r\033[K{self.line()}", file=self.stream, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
    ns = build_parser().parse_args(argv)
    display = None if ns.quiet else ProgressDisplay()
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        config = config_from_args(ns)
        inputs = [make_dataset(ns.input_type, path,
                               f"input{i}" if len(ns.input) > 1 else "input")
                  for i, path in enumerate(ns.input)]
        side_inputs = [SideInput(path, name=name)
                       for name, path in _pairs(ns.side_input, "--side-input").items()]
        from .engine.job import run_job

        result = run_job(config, inputs, ns.output, arguments=script_args,
                         side_inputs=side_inputs,
                         on_plan=display.start if display else None, stop_event=stop,
                         stat_inputs=False)
    except ParallelRunError as exc:
        print(f"parallel-run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nparallel-run: interrupted; run the same command again to resume", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if display is not None:
            display.stop()
    for note in result.notes:
        print(f"parallel-run: {note}", file=sys.stderr)
    print(result.summary())
    return 0 if result.success else 1
