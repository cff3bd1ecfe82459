"""The job's output location: where results, state and logs are kept.

Everything a job writes goes through an :class:`OutputLocation`, so "where" is decided in one
place: :class:`LocalLocation` for a folder, :class:`RemoteLocation` for any fsspec URL
(``s3://``, ``memory://``...). Writes that other steps rely on are atomic (a local file is
written aside and renamed; an object store's PUT is atomic): a crash never leaves half of one.

Worker processes only ever write to local disk. With a remote output, each node keeps a local
staging folder (its logs, and records on their way); the node uploads records as they finish
and logs every so often (see ``engine/node.py``).

A store that does not answer for a while (refused or cut connections, timeouts, server
errors) is waited for: each request is tried again with exponential backoff, for at most
``PARALLEL_RUN_STORE_RETRY_SECONDS`` (30 s) in all, and the outage is told once in
``logs/sys/master_role.txt`` when the store answers again; one that stays down raises
:class:`StoreUnavailable`. A store that answers "no" (access denied, no such bucket) is not
asked again: that is a usage error.

Layout under the output folder (the logs, see logs.py, plus our own state)::

    parallel_run_step.txt
    logs/...                          see logs.py
    .parallel_run/job.json            fingerprint of the job, plan summary
    .parallel_run/plan/NNNNN.jsonl    mini-batch descriptors, PLAN_CHUNK per file
    .parallel_run/results/<writer>.log          durable records, appended by each process
    .parallel_run/results/NNNNN/NNNNNNNNN.rec   (remote output) one record object each
    .parallel_run/counts/node-K.json  live counts of node K, read by the others
    .parallel_run/events/<ip>/<process>.jsonl   tries and errors of each process (events.py)
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from .errors import InputError, StoreUnavailable
from .logs import MASTER_ROLE, encoded, line, timestamp

T = TypeVar("T")

STATE_DIR = ".parallel_run"
PLAN_CHUNK = 1000


def local_path(url: str) -> str:
    """``file:///x`` -> ``/x``; a plain path stays as it is."""
    return url[len("file://"):] if url.startswith("file://") else url


def is_remote_url(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def describe_storage_error(url: str, exc: BaseException) -> str:
    """One line for a store that refused a request: the URL and what it said."""
    kind = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else kind
    if isinstance(exc, PermissionError):
        hint = "check the credentials (storage_options or the connection)"
    elif isinstance(exc, FileNotFoundError):
        hint = "check that the bucket or folder exists"
    else:
        hint = "check the URL and the credentials"
    return f"{url!r}: the store refused the request ({kind}: {text}); {hint}"


# -- a store that does not answer for a while --------------------------------------------------

RETRY_SECONDS_ENV = "PARALLEL_RUN_STORE_RETRY_SECONDS"
RETRY_SECONDS = 30.0  # how long, in all, one request waits for a store that does not answer
START_RETRY_SECONDS = 5.0  # the same when a job starts: an unreachable store is likelier a typo
FIRST_RETRY_DELAY = 0.25
LONGEST_RETRY_DELAY = 8.0


def retry_seconds() -> float:
    text = os.environ.get(RETRY_SECONDS_ENV, "").strip()
    try:
        seconds = float(text) if text else RETRY_SECONDS
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        raise InputError(f"{RETRY_SECONDS_ENV} = {text!r}: must be a number of seconds >= 0")
    return seconds


@functools.cache
def _unreachable_kinds() -> tuple[type[BaseException], ...]:
    """Errors of a store that did not answer: refused, cut or timed-out connections."""
    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from botocore import exceptions as boto

        kinds += [boto.ConnectionError, boto.HTTPClientError]
    except ImportError:
        pass
    try:
        import aiohttp

        kinds += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    except ImportError:
        pass
    try:
        from azure.core import exceptions as azure

        kinds += [azure.ServiceRequestError, azure.ServiceResponseError]
    except ImportError:
        pass
    from fsspec.exceptions import FSTimeoutError

    return (*kinds, FSTimeoutError)


def is_unreachable(exc: BaseException) -> bool:
    """The store did not answer (worth asking again), as opposed to answering "no" (access
    denied, no such bucket: asking again changes nothing). Libraries wrap the first kind in
    their own errors, so the whole chain of causes is looked at; a 5xx answer counts too."""
    if isinstance(exc, PermissionError | FileNotFoundError | FileExistsError):
        return False  # an answer, whatever happened on the way to it
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, _unreachable_kinds()):
            return True
        status = _http_status(cause)
        if isinstance(status, int) and status >= 500:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _http_status(exc: BaseException) -> Any:
    """The HTTP status of a store's answer carried by ``exc``: botocore's response (S3),
    gcsfs's HttpError ``code`` (GCS), azure-core's ``status_code`` (Azure); else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if type(exc).__name__ == "HttpError" and type(exc).__module__.startswith("gcsfs"):
        return getattr(exc, "code", None)
    return getattr(exc, "status_code", None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@dataclass
class _Outage:
    since: float  # time.time() of the first request that got no answer
    started: float  # the same on the monotonic clock
    first: str  # that request's error
    retried: int = 0


class Retrying:
    """Calls to one store, tried again with bounded exponential backoff while it does not
    answer. Shared by the threads that call it; an outage makes one note (not one per
    request), ready in :meth:`take_notes` once the store answers again."""

    def __init__(self, store: str, budget: float | None = None) -> None:
        """``store`` names it in messages: "the output store 's3://b/out'"."""
        self.store = store
        self.budget = retry_seconds() if budget is None else budget
        self._lock = threading.Lock()
        self._outage: _Outage | None = None
        self._notes: list[str] = []

    def call(self, fn: Callable[[], T], where: str = "", budget: float | None = None) -> T:
        """``fn()``, asked again while the store does not answer, for ``budget`` seconds at
        most (the store's default); then :class:`StoreUnavailable`. Other errors go through."""
        budget = self.budget if budget is None else budget
        delay, started = FIRST_RETRY_DELAY, None
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                now = time.monotonic()
                started = now if started is None else started
                if now - started + delay > budget:
                    raise self._gave_up(exc, where, now - started) from None
                self._failed(exc)
                time.sleep(delay)
                delay = min(2 * delay, LONGEST_RETRY_DELAY)
                continue
            if started is not None:
                self._answered()
            return result

    def take_notes(self) -> list[str]:
        with self._lock:
            notes, self._notes = self._notes, []
        return notes

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._outage is None:
                self._outage = _Outage(time.time(), time.monotonic(), _first_line(exc))
            self._outage.retried += 1

    def _answered(self) -> None:
        with self._lock:
            outage, self._outage = self._outage, None
            if outage is not None:
                self._notes.append(
                    f"{self.store} did not answer for {time.monotonic() - outage.started:.1f} s "
                    f"from {timestamp(outage.since)} ({outage.first}); {outage.retried} "
                    "request(s) were tried again with backoff, and it answers again")

    def _gave_up(self, exc: BaseException, where: str, waited: float) -> StoreUnavailable:
        at = f" (at {where!r})" if where else ""
        return StoreUnavailable(f"{self.store} stopped answering{at}: {_first_line(exc)}; "
                                f"waited {waited:.0f} s ({RETRY_SECONDS_ENV} sets how long)")


def describe_os_error(exc: OSError, where: str) -> str:
    """One line for a file system error: the path (``where`` when the error names none, as a
    failed write() does) and what the system said."""
    path = exc.filename if exc.filename is not None else where
    return f"{os.fsdecode(path)!r}: {exc.strerror or exc}"


def current_umask() -> int:
    """This process's umask, read without changing it (another thread may be making files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def keep_files_owner_writable() -> None:
    """From now on, files and folders this process makes (and the workers it starts) are never
    writable by group or others, whatever the umask it was started with: another local user
    must not be able to change a job's state, logs or output."""
    mask = current_umask()
    if mask & 0o022 != 0o022:
        os.umask(mask | 0o022)


def open_location(url: str, storage_options: dict[str, Any] | None = None) -> OutputLocation:
    """The output location of ``url``: a local folder or an fsspec store."""
    if not isinstance(url, str) or not url:
        raise InputError(f"output {url!r}: must be a folder path or URL")
    if is_remote_url(url):
        return RemoteLocation(url, storage_options or {})
    return LocalLocation(url)


_TMP_COUNTER = itertools.count()


def _fitting(name: str, room: int) -> str:
    """``name`` cut to ``room`` bytes of UTF-8 (whole characters): a temporary file is named
    after its target, and a target name of up to 255 bytes must leave room for the rest."""
    return name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy_rest(handle: BinaryIO, out: int, length: int | None = None) -> None:
    """Append ``length`` bytes of the local file ``handle`` from its position on (all that is
    left when None) to the file descriptor ``out``: by the kernel (copy_file_range) where it
    can, through memory if not."""
    offset = handle.tell()
    src = handle.fileno()
    end = os.fstat(src).st_size if length is None else offset + length
    try:
        while offset < end:
            copied = os.copy_file_range(src, out, end - offset, offset)
            if not copied:
                break
            offset += copied
        return
    except OSError:  # a kernel or file system that cannot: copy the rest by hand
        handle.seek(offset)
    while offset < end and (chunk := handle.read(min(1 << 20, end - offset))):
        write_all(out, chunk)
        offset += len(chunk)


class OutputLocation:
    """Relative paths use '/'; every method is safe to call for paths that do not exist."""

    url: str
    is_remote: bool = False

    # -- implemented by both kinds ---------------------------------------------------------------

    def write_atomic(self, rel: str, data: bytes) -> None:
        raise NotImplementedError

    def read_bytes(self, rel: str, end: int | None = None) -> bytes | None:
        """The file's bytes (the first ``end`` of them), or None when it does not exist."""
        raise NotImplementedError

    def listdir(self, rel: str) -> list[str]:
        raise NotImplementedError

    def remove(self, rel: str) -> None:
        raise NotImplementedError

    def rename(self, src: str, dst: str) -> None:
        raise NotImplementedError

    def append_text(self, rel: str, text: str) -> None:
        raise NotImplementedError

    def put_file(self, local: str, rel: str) -> None:
        """Publish a finished local file at ``rel`` in one step (the file is moved away)."""
        raise NotImplementedError

    def local_temp(self, rel: str) -> str:
        """A local path to build ``rel`` in before :meth:`put_file`."""
        raise NotImplementedError

    def makedirs(self, rel: str = "") -> None:
        """Local folders must exist before files go in; object stores have no folders."""

    def display(self, rel: str = "") -> str:
        return f"{self.url.rstrip('/')}/{rel}" if rel else self.url

    # -- remote only (is_remote): workers write to local disk, their node copies in and out ------

    def check_writable(self) -> None:
        """Fail early, naming the URL, when the store refuses a write."""
        raise NotImplementedError

    def get_file(self, rel: str, local: str) -> bool:
        """Download ``rel`` to ``local``; False when it does not exist."""
        raise NotImplementedError

    def upload_tree(self, local_root: str,
                    skip: tuple[str, ...] = (f"{STATE_DIR}/results",)) -> None:
        """Copy every file under ``local_root`` to the same relative path here."""
        raise NotImplementedError

    # -- built on the above ----------------------------------------------------------------------

    def write_json(self, rel: str, data: Any) -> None:
        self.write_atomic(rel, json.dumps(data, indent=1, sort_keys=True).encode())

    def read_json(self, rel: str) -> Any | None:
        data = self.read_bytes(rel)
        return None if data is None else json.loads(data)

    def exists(self, rel: str) -> bool:
        return self.read_bytes(rel, end=0) is not None

    def iter_lines(self, rel: str) -> Iterator[str]:
        data = self.read_bytes(rel)
        if data is not None:
            yield from data.decode("utf-8").splitlines(keepends=True)


class LocalLocation(OutputLocation):
    """A folder on this machine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(local_path(url)).absolute()
        self.root_str = str(self.root)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def makedirs(self, rel: str = "") -> None:
        try:
            self.path(rel).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"output {self.display(rel)!r}: cannot create the folder "
                             f"({exc.strerror or exc})") from None
        if not rel:
            self.check_writable()

    def check_writable(self) -> None:
        """Fail early, naming the folder, when no file can be made in it (read-only)."""
        probe = self.path(f".probe-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(probe)
        except OSError as exc:
            raise InputError(f"output {self.display()!r}: cannot write in the folder "
                             f"({exc.strerror or exc})") from None

    def display(self, rel: str = "") -> str:
        return str(self.path(rel)) if rel else str(self.root)

    def write_atomic(self, rel: str, data: bytes) -> None:
        target = os.path.join(self.root_str, rel)
        folder, name = os.path.split(target)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}-{next(_TMP_COUNTER)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, flags, 0o644)
        try:
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:  # a full disk: no half-written temp file is left behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read_bytes(self, rel: str, end: int | None = None) -> bytes | None:
        try:
            with open(self.path(rel), "rb") as handle:
                return handle.read() if end is None else handle.read(end)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def listdir(self, rel: str) -> list[str]:
        try:
            return os.listdir(self.path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove(self, rel: str) -> None:
        target = self.path(rel)
        if target.is_dir():
            import shutil

            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.replace(self.path(src), self.path(dst))

    def append_text(self, rel: str, text: str) -> None:
        """One write() per call with O_APPEND: lines of concurrent writers do not interleave."""
        target = self.path(rel)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        try:
            fd = os.open(target, flags, 0o644)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, flags, 0o644)
        try:
            os.write(fd, encoded(text))
        finally:
            os.close(fd)

    def local_temp(self, rel: str) -> str:
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        # named after the pid: a later run removes it once this process is dead (engine/ownership.py)
        return str(target.with_name(
            f".{_fitting(target.name, 255 - 24)}.{os.getpid()}-{os.urandom(4).hex()}.tmp"))

    def put_file(self, local: str, rel: str) -> None:
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(local, target)
        except OSError:  # another file system: copy aside, then rename
            import shutil

            tmp = self.local_temp(rel)
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)
            os.unlink(local)


class RemoteLocation(OutputLocation):
    """An fsspec store (``s3://bucket/prefix``, ``memory://x``...)."""

    is_remote = True

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        import fsspec

        self.url = url.rstrip("/")
        try:
            self.fs, self.base = fsspec.core.url_to_fs(self.url, **storage_options)
        except Exception as exc:
            raise InputError(f"output {describe_storage_error(url, exc)}") from None
        self.base = self.base.rstrip("/")
        self.retrying = Retrying(f"the output store {self.url!r}")
        self._noting = threading.local()

    def _full(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def _call(self, what: str, rel: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` against the store, waited for while it does not answer."""
        try:
            result = self.retrying.call(functools.partial(fn, *args, **kwargs), self.display(rel))
        except (FileNotFoundError, StoreUnavailable):
            raise
        except Exception as exc:
            raise InputError(f"output {what}: {describe_storage_error(self.display(rel), exc)}") from None
        self._write_notes()
        return result

    def _write_notes(self) -> None:
        """Tell an outage that is over in master_role.txt (through the store: not from
        within the writing of a note)."""
        if getattr(self._noting, "busy", False):
            return
        self._noting.busy = True
        try:
            for note in self.retrying.take_notes():
                self.append_text(MASTER_ROLE, line(note))
        finally:
            self._noting.busy = False

    def check_writable(self) -> None:
        """Also whether the store answers at all: for a few seconds only, as a store that a
        job cannot reach when it starts is likelier a wrong URL than an outage."""
        probe = f"{STATE_DIR}/.probe-{os.urandom(4).hex()}"
        budget, self.retrying.budget = self.retrying.budget, min(self.retrying.budget,
                                                                 START_RETRY_SECONDS)
        try:
            self.write_atomic(probe, b"")
            self.remove(probe)
        except FileNotFoundError as exc:
            raise InputError(f"output {describe_storage_error(self.url, exc)}") from None
        finally:
            self.retrying.budget = budget

    def write_atomic(self, rel: str, data: bytes) -> None:
        self._call("write", rel, self.fs.pipe_file, self._full(rel), data)

    def read_bytes(self, rel: str, end: int | None = None) -> bytes | None:
        try:
            if end is None:
                return self._call("read", rel, self.fs.cat_file, self._full(rel))
            # not fs.isfile(): it says False for a store that does not answer
            if self._call("read", rel, self.fs.info, self._full(rel)).get("type") != "file":
                return None
            return self._call("read", rel, self.fs.cat_file, self._full(rel), 0, end) if end else b""
        except FileNotFoundError:
            return None

    def listdir(self, rel: str) -> list[str]:
        try:
            entries = self._call("list", rel, self.fs.ls, self._full(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries})

    def remove(self, rel: str) -> None:
        full = self._full(rel)
        try:
            if self._call("list", rel, self.fs.exists, full):
                self._call("remove", rel, self.fs.rm, full, recursive=True)
        except FileNotFoundError:
            pass
        self.fs.invalidate_cache()

    def rename(self, src: str, dst: str) -> None:
        """Object stores have no rename: copy each object, then remove the originals."""
        self.fs.invalidate_cache()
        source = self._full(src)
        for path in self._call("list", src, self.fs.find, source):
            self._call("copy", src, self.fs.copy, path, self._full(dst) + path[len(source):])
        self.remove(src)

    def append_text(self, rel: str, text: str) -> None:
        """Read, add, write back: for files with one writer at a time (planner, reducer)."""
        old = self.read_bytes(rel) or b""
        self.write_atomic(rel, old + encoded(text))

    def local_temp(self, rel: str) -> str:
        import tempfile

        # named after the pid: a later run removes it once this process is dead (engine/ownership.py)
        fd, path = tempfile.mkstemp(prefix=f"parallel-run-{os.getpid()}-",
                                    suffix="-" + _fitting(rel.rsplit("/", 1)[-1], 255 - 40))
        os.close(fd)
        return path

    def put_file(self, local: str, rel: str) -> None:
        self._call("upload", rel, self.fs.put_file, local, self._full(rel))
        os.unlink(local)

    def get_file(self, rel: str, local: str) -> bool:
        try:
            self._call("download", rel, self.fs.get_file, self._full(rel), local)
        except FileNotFoundError:
            return False
        return True

    def upload_tree(self, local_root: str,
                    skip: tuple[str, ...] = (f"{STATE_DIR}/results",)) -> None:
        """Copy every file under ``local_root`` to the same relative path here, but for the
        folders ``skip`` (by default a node's staged records: it puts each one itself)."""
        for dirpath, dirnames, filenames in os.walk(local_root):
            rel_dir = os.path.relpath(dirpath, local_root)
            parent = "" if rel_dir == "." else f"{rel_dir}/".replace(os.sep, "/")
            dirnames[:] = [d for d in dirnames if parent + d not in skip]
            for name in filenames:
                if name.endswith(".tmp"):
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                self._call("upload", rel, self.fs.put_file, os.path.join(dirpath, name), self._full(rel))
