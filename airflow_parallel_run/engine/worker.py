"""A worker process: load the entry script, init() once, run() mini-batches, shutdown() at the end.

Started by the node as ``python -m airflow_parallel_run.engine.worker NAME FD PARENT`` with
its stdout and stderr already pointing at the user's log files (or at the node's log pump,
which masks secrets); its spec is the first message on the connection ``FD``. It never imports Airflow (nor
pandas, unless the script does). Timeouts are not handled here: the node kills the whole
process group of a worker whose run() overstays.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import inspect
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any

from .. import entry_script, events, logs
from ..masking import Masker, MaskingFilter, MaskingStream
from ..results import OK, MiniBatchRecord, RecordLog
from ..storage import LocalLocation
from .messages import (
    InitFailed,
    MiniBatchDone,
    MiniBatchFailed,
    Ready,
    RunMiniBatch,
    Stop,
    Stopped,
    WorkerSpec,
)


class ResultError(Exception):
    """run() returned something that cannot be counted against its mini-batch."""

    retryable = False  # the same script returns the same type again: another try cannot help


@dataclass
class MiniBatchContext:
    """The second argument of ``run(mini_batch, mini_batch_context)``."""

    minibatch_index: int
    dataset: str
    partition_key_value: dict[str, Any] | None = None
    try_number: int = 1

    @property
    def mini_batch_index(self) -> int:
        return self.minibatch_index


def load_entry_script(path: str) -> ModuleType:
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load entry script {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _wants_context(run: Any) -> bool:
    try:
        params = list(inspect.signature(run).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _is_dataframe(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "columns")


def _is_series(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and type(value).__name__ == "Series"


def _result_lines(result: Any) -> tuple[bytes, list[tuple[int, str]]]:
    """A list result's output, one line per result; and the results left out (position,
    ``str()``) because their text holds a line break (they would pass for several results)."""
    text = "".join(f"{item}\n" for item in result)
    if text.count("\n") == len(result) and "\r" not in text:  # the usual case, checked at once
        return text.encode("utf-8", "backslashreplace"), []
    lines, broken = [], []
    for position, item in enumerate(result):
        line = str(item)
        if "\n" in line or "\r" in line:
            broken.append((position, line))
        else:
            lines.append(f"{line}\n")
    return "".join(lines).encode("utf-8", "backslashreplace"), broken


def _dataframe_lines(frame: Any, separator: str) -> bytes:
    """``to_csv(header=False, index=False, sep=separator)``, byte for byte.

    Integer columns are written by pyarrow's CSV writer, about ten times faster than pandas
    and identical for integers; anything else (floats, text, nullable values) goes through
    pandas, whose formatting of those is the contract.
    """
    import numpy as np

    # numpy integers only: nullable Int64 has missing values, which pandas writes its own way
    if len(separator) == 1 and all(isinstance(dtype, np.dtype) and dtype.kind in "iu"
                                   for dtype in frame.dtypes):
        import pyarrow as pa
        import pyarrow.csv as pacsv

        table = pa.Table.from_pandas(frame, preserve_index=False)
        sink = pa.BufferOutputStream()
        # one batch for the whole frame: pyarrow's default of 1,024 rows costs a fifth more
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, delimiter=separator,
                                                        quoting_style="needed",
                                                        batch_size=max(len(frame), 1)))
        return sink.getvalue().to_pybytes()
    return frame.to_csv(header=False, index=False, sep=separator, lineterminator="\n").encode("utf-8")


def encode_result(result: Any,
                  spec: WorkerSpec) -> tuple[int, bytes, str | None, list[tuple[int, str]]]:
    """(number of results, output bytes, DataFrame header line, positions of the results left
    out: see :func:`_result_lines`) of what run() returned. A pandas.Series is its values."""
    if _is_series(result):
        result = result.tolist()
    if _is_dataframe(result):
        header = None
        if spec.append_row_dataframe_header:
            header = spec.append_row_separator.join(str(c) for c in result.columns)
        if spec.output_action != "append_row" or len(result) == 0:
            return len(result), b"", header, []
        return len(result), _dataframe_lines(result, spec.append_row_separator), header, []
    if result is None or isinstance(result, str | bytes | dict) or not hasattr(result, "__len__"):
        raise ResultError(
            f"run() returned {type(result).__name__}"
            f"{'' if result is None else ' ' + repr(result)[:80]}: it must return a list, "
            "a tuple, a pandas.Series or a pandas.DataFrame with one entry per input item"
        )
    if spec.output_action != "append_row":
        return len(result), b"", None, []
    payload, broken = _result_lines(result)
    return len(result), payload, None, broken


class Worker:
    def __init__(self, spec: WorkerSpec, name: str, conn: Connection) -> None:
        self.spec = spec
        self.name = name
        self.conn = conn
        self.location = LocalLocation(spec.output_root)
        self.error_log = self.location.path(logs.user_error(spec.ip, name))
        self.run_fn: Any = None
        self.with_context = False
        self.module: ModuleType | None = None
        self.masker = Masker(spec.secrets)
        self.records = RecordLog.for_process(self.location, f"{spec.ip}-{name}")

    # -- errors ---------------------------------------------------------------------------------

    def _write_traceback(self, failed: str | RunMiniBatch) -> str:
        """Write the current exception, raised in ``failed`` ("init", "shutdown" or a try of a
        mini-batch), as this process's error event with its traceback; its one line back."""
        exc_type, exc, tb = sys.exc_info()
        error = (f"{exc_type.__name__ if exc_type else 'Error'}: {exc}".splitlines() or ["Error"])[0]
        if isinstance(exc, MemoryError) and self.spec.memory_limit is not None:
            # What run() allocated is still held by its frames: free it to write the traceback.
            traceback.clear_frames(tb)
            error = f"memory limit of {self.spec.memory_limit} MB exceeded ({error})"
        error = self.masker.mask(error)
        where: dict[str, Any] = {"what": failed}
        if isinstance(failed, RunMiniBatch):
            where = {"mini_batch": failed.index, "try_number": failed.try_number}
        events.write_error(self.location, events.ErrorEvent.now(
            self.spec.node_index, self.spec.ip, self.name, os.getpid(), error,
            self.masker.mask(traceback.format_exc()), **where))
        return error

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> bool:
        """Load the script and call init(); tell the node how it went."""
        spec = self.spec
        sys.argv = [spec.entry_script, *spec.arguments]
        if spec.working_dir not in sys.path[:1]:
            sys.path.insert(0, spec.working_dir)
        entry_script.install_azureml_alias()
        entry_script.configure(entry_script._Context(
            log_dir=str(self.location.path("logs")),
            output_dir=str(self.location.root),
            working_dir=spec.working_dir,
            node_id=spec.ip,
            process_name=self.name,
            side_inputs=spec.side_inputs,
            log_file=str(self.location.path(logs.entry_script_log(spec.ip, self.name))),
            logging_level=spec.logging_level,
        ))
        helper = entry_script.EntryScript()  # its log file exists even if the script never logs
        if self.masker:
            helper.logger.addFilter(MaskingFilter(self.masker))
            sys.stdout = MaskingStream(sys.stdout, self.masker)
            sys.stderr = MaskingStream(sys.stderr, self.masker)
        try:
            if spec.tables:  # load the table readers now, not on the first mini-batch
                import pandas  # noqa: F401
                import pyarrow
                import pyarrow.csv  # noqa: F401

                from ..inputs import tabular  # noqa: F401

                if spec.arrow_threads:
                    pyarrow.set_cpu_count(spec.arrow_threads)
            self.module = load_entry_script(spec.entry_script)
            self.run_fn = getattr(self.module, "run", None)
            if not callable(self.run_fn):
                raise AttributeError(f"entry script {spec.entry_script} defines no run() function")
            self.with_context = _wants_context(self.run_fn)
            init = getattr(self.module, "init", None)
            if callable(init):
                init()
        except BaseException:
            error = self._write_traceback("init")
            self.conn.send(InitFailed(os.getpid(), error))
            return False
        finally:
            sys.stdout.flush()
        self.conn.send(Ready(os.getpid()))
        return True

    def _read_table(self, task: RunMiniBatch) -> Any:
        from ..inputs.tabular import TablePiece, read_piece

        table = self.spec.tables[task.dataset]
        return read_piece(TablePiece.from_dict(task.piece or {}), table["options"],
                          table["storage_options"])

    def _failed_table_size(self, task: RunMiniBatch) -> int:
        from ..inputs.tabular import TablePiece, count_rows_estimate

        table = self.spec.tables[task.dataset]
        return count_rows_estimate(TablePiece.from_dict(task.piece or {}), table["options"],
                                   table["storage_options"])

    def run_mini_batch(self, task: RunMiniBatch) -> None:
        spec = self.spec
        try:
            mini_batch: Any = task.items if task.piece is None else self._read_table(task)
        except BaseException as exc:
            error = self._write_traceback(task)
            self.conn.send(MiniBatchFailed(task.index, error, 0.0,
                                           retryable=getattr(exc, "retryable", True),
                                           total=self._failed_table_size(task)))
            return
        total = len(mini_batch)
        started_at = time.time()  # a file changed from now on may not be what run() read
        started = time.perf_counter()
        try:
            if total == 0 and task.piece is not None:  # a piece that owns no row: nothing to run
                result: Any = []
            elif self.with_context:
                pkv = (task.piece or {}).get("partition_key_value")
                context = MiniBatchContext(task.index, task.dataset, pkv, task.try_number)
                result = self.run_fn(mini_batch, context)
            else:
                result = self.run_fn(mini_batch)
            run_seconds = time.perf_counter() - started
            count, payload, header, broken = encode_result(result, spec)
        except BaseException as exc:
            run_seconds = time.perf_counter() - started
            error = self._write_traceback(task)
            self.conn.send(MiniBatchFailed(task.index, error, run_seconds, total=total,
                                           retryable=not isinstance(exc, ResultError)))
            return
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        if broken:
            self._results_left_out(task, broken)
            count -= len(broken)
        succeeded = min(count, total)
        warning = None
        if count > total:
            warning = (f"run() returned {count} results for {total} items in mini-batch "
                       f"{task.index}; all are written out")
        record = MiniBatchRecord(task.index, OK, total, succeeded, total - succeeded,
                                 task.try_number, header,
                                 started_at if task.versions else None)
        written = self.records.write(record, payload)
        self.conn.send(MiniBatchDone(task.index, total, succeeded, total - succeeded,
                                     run_seconds, warning, written))

    def _results_left_out(self, task: RunMiniBatch, broken: list[tuple[int, str]]) -> None:
        """One error event for the results of a mini-batch that held a line break."""
        first, text = broken[0]
        item = f" (item {task.items[first]!r})" if first < len(task.items) else ""
        error = (f"ResultError: {len(broken)} result(s) of run() hold a line break, the first "
                 f"at position {first}{item}: {text[:80]!r}; they are left out of the "
                 "output and count as failed items (one line per result: remove line breaks, "
                 "or return a pandas.DataFrame, written as quoted CSV)")
        events.write_error(self.location, events.ErrorEvent.now(
            self.spec.node_index, self.spec.ip, self.name, os.getpid(), self.masker.mask(error),
            mini_batch=task.index, try_number=task.try_number))

    def shutdown(self) -> None:
        shutdown = getattr(self.module, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except BaseException:
                self._write_traceback("shutdown")
        sys.stdout.flush()

    def serve(self) -> int:
        if not self.start():
            return 3
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):  # the node is gone: nothing more to do
                return 0
            if isinstance(message, Stop):
                self.shutdown()
                self.conn.send(Stopped())
                return 0
            self.run_mini_batch(message)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this worker when the node that started it dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)


def _limit_memory(megabytes: int | None) -> None:
    """worker_memory_limit as RLIMIT_AS: the kernel refuses allocations past it at once, so
    run() gets a MemoryError (its children inherit the limit) before the machine suffers."""
    if megabytes is not None:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> int:
    name, fd, parent = argv[1], int(argv[2]), int(argv[3])
    _die_with_parent(parent)
    conn = Connection(fd)
    os.set_inheritable(fd, False)
    # the spec holds secrets and storage options: it comes through the socket, never a file
    spec = WorkerSpec.from_json(conn.recv_bytes().decode("utf-8", "surrogateescape"))
    _limit_memory(spec.memory_limit)
    # Line-buffered so the user's prints are in the log even when run() hangs and is killed.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    worker = Worker(spec, name, conn)
    # On a timeout the node sends SIGUSR1 first: the stack of the stuck run() lands in the log.
    worker.error_log.parent.mkdir(parents=True, exist_ok=True)
    stack_log = open(worker.error_log, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the handler
    faulthandler.register(signal.SIGUSR1, file=stack_log, all_threads=True)
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
