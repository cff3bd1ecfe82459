"""The job's output location: where results, state and logs are kept.

Everything a job writes goes through an :class:`OutputLocation`, so "where" is decided in one
place: :class:`LocalLocation` for a folder, :class:`RemoteLocation` for any fsspec URL
(``s3://``, ``memory://``...). Writes that other steps rely on are atomic (a local file is
written aside and renamed; an object store's PUT is atomic): a crash never leaves half of one.

Worker processes only ever write to local disk. With a remote output, each node keeps a local
staging folder (its logs, and records on their way); the node uploads records as they finish
and logs every so often (see ``engine/node.py``).

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

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import InputError

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


def open_location(url: str, storage_options: dict[str, Any] | None = None) -> OutputLocation:
    """The output location of ``url``: a local folder or an fsspec store."""
    if not isinstance(url, str) or not url:
        raise InputError(f"output {url!r}: must be a folder path or URL")
    if is_remote_url(url):
        return RemoteLocation(url, storage_options or {})
    return LocalLocation(url)


_TMP_COUNTER = itertools.count()


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
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, target)

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
            os.write(fd, text.encode("utf-8", "backslashreplace"))
        finally:
            os.close(fd)

    def local_temp(self, rel: str) -> str:
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        # named after the pid: a later run removes it once this process is dead (engine/ownership.py)
        return str(target.with_name(f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp"))

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

    def _full(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def _call(self, what: str, rel: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise InputError(f"output {what}: {describe_storage_error(self.display(rel), exc)}") from None

    def check_writable(self) -> None:
        probe = f"{STATE_DIR}/.probe-{os.urandom(4).hex()}"
        try:
            self.write_atomic(probe, b"")
            self.remove(probe)
        except FileNotFoundError as exc:
            raise InputError(f"output {describe_storage_error(self.url, exc)}") from None

    def write_atomic(self, rel: str, data: bytes) -> None:
        self._call("write", rel, self.fs.pipe_file, self._full(rel), data)

    def read_bytes(self, rel: str, end: int | None = None) -> bytes | None:
        try:
            if end is None:
                return self._call("read", rel, self.fs.cat_file, self._full(rel))
            if not self.fs.isfile(self._full(rel)):
                return None
            return self._call("read", rel, self.fs.cat_file, self._full(rel), 0, end) if end else b""
        except FileNotFoundError:
            return None

    def listdir(self, rel: str) -> list[str]:
        try:
            entries = self.fs.ls(self._full(rel), detail=False)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise InputError(f"output list: {describe_storage_error(self.display(rel), exc)}") from None
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries})

    def remove(self, rel: str) -> None:
        full = self._full(rel)
        try:
            if self.fs.exists(full):
                self.fs.rm(full, recursive=True)
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
        self.write_atomic(rel, old + text.encode("utf-8", "backslashreplace"))

    def local_temp(self, rel: str) -> str:
        import tempfile

        # named after the pid: a later run removes it once this process is dead (engine/ownership.py)
        fd, path = tempfile.mkstemp(prefix=f"parallel-run-{os.getpid()}-",
                                    suffix="-" + rel.rsplit("/", 1)[-1])
        os.close(fd)
        return path

    def put_file(self, local: str, rel: str) -> None:
        self._call("upload", rel, self.fs.put_file, local, self._full(rel))
        os.unlink(local)

    def get_file(self, rel: str, local: str) -> bool:
        try:
            self.fs.get_file(self._full(rel), local)
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
