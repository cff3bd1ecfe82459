"""Leases in the output location: one live job per output, taken over only from a dead holder.

A lease is a small JSON object: who holds it (``holder``: one run of a job; an Airflow DAG run
keeps the same holder across its planner, nodes, reducer and their retries), the host and
pid of the process that took it, and until when it holds (``expires``, renewed while the job
runs). It is created with an atomic create (``O_EXCL`` on a local folder, a conditional
``PutObject`` with ``If-None-Match: *`` on S3, an upload with ``If-None-Match: *`` on Azure
Blob, an upload with ``ifGenerationMatch=0`` on Google Cloud Storage), so of two jobs starting
at once exactly one gets it. A lease whose holder is gone (expired, or on this host a process
that no longer exists) is taken over; the take-over itself is an atomic create of a marker named after the
dead lease's token, so two jobs taking over the same dead lease cannot both win.

The output lock lives beside the state folder (``.parallel_run.lock``), not in it: clearing
a job's state never drops the lock of the job that clears it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ParallelRunError
from .logs import timestamp
from .storage import LocalLocation, OutputLocation

LOCK = ".parallel_run.lock"
TAKEOVER = ".parallel_run.takeover-"  # + the token of the dead lease taken over
DEFAULT_TTL = 60.0  # seconds a lease holds without renewal
LEASE_VERSION = 1


class OutputInUse(ParallelRunError):
    """The output location holds another live job (CLI exit status 2)."""


def _process_started(pid: int) -> float | None:
    """When a process on this host started (None when there is none with that pid)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:
        return 0.0  # it exists but cannot be inspected: take it as alive


@dataclass
class Lease:
    holder: str  # one run of a job
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    pid_started: float = 0.0
    since: float = field(default_factory=time.time)
    expires: float = 0.0
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # this taking of the lease
    job: str = ""  # a short description of what runs, for messages
    # False for a holder whose tasks run in several processes one after the other (an
    # Airflow DAG run): its taker's pid ending does not free the lease, only its expiry does.
    pid_bound: bool = True
    v: int = LEASE_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Lease | None:
        """The lease, or None for bytes that are not one (a torn write): a torn lease is
        held until it expires by the time it was written, never free at once."""
        try:
            raw = json.loads(data)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        return f"{self.host} pid {self.pid} since {timestamp(self.since)}"

    def is_dead(self, now: float) -> bool:
        if self.expires < now:
            return True
        if not self.pid_bound or self.host != socket.gethostname():
            return False
        started = _process_started(self.pid)
        return started is None or (started > 0 and abs(started - self.pid_started) > 1.0)


def has_atomic_create(location: OutputLocation) -> bool:
    """The store offers an atomic create (:func:`create_exclusive` never answers None)."""
    if isinstance(location, LocalLocation):
        return True
    return _store_kind(location) is not None


# Stores with an atomic create, by fsspec protocol (s3fs, adlfs, gcsfs); the tests race
# creates on moto, Azurite and fake-gcs-server.
_ATOMIC_PROTOCOLS = {"s3": "s3", "s3a": "s3", "abfs": "azure", "abfss": "azure", "az": "azure",
                     "gs": "gcs", "gcs": "gcs"}


def _store_kind(location: OutputLocation) -> str | None:
    protocol = getattr(getattr(location, "fs", None), "protocol", "")
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return next((_ATOMIC_PROTOCOLS[p] for p in protocols if p in _ATOMIC_PROTOCOLS), None)


def create_exclusive(location: OutputLocation, rel: str, data: bytes) -> bool | None:
    """Create ``rel`` holding ``data`` only if nothing is there: True when this call made it,
    False when it existed, None when the store offers no atomic create."""
    if isinstance(location, LocalLocation):
        return _create_local(location, rel, data)
    kind = _store_kind(location)
    if kind == "s3":
        return _create_s3(location, rel, data)
    if kind == "azure":
        return _create_azure(location, rel, data)
    if kind == "gcs":
        return _create_gcs(location, rel, data)
    return None


def _create_local(location: LocalLocation, rel: str, data: bytes) -> bool:
    target = location.path(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return True


def _create_s3(location: Any, rel: str, data: bytes) -> bool:
    """PutObject with If-None-Match: * (S3, and moto, answer 412 when the key exists)."""
    from fsspec.asyn import sync

    bucket, _, key = location._full(rel).partition("/")
    fs = location.fs
    try:
        sync(fs.loop, fs._call_s3, "put_object", Bucket=bucket, Key=key, Body=data,
             IfNoneMatch="*")
    except FileExistsError:  # s3fs's name for 412 Precondition Failed
        return False
    finally:
        fs.invalidate_cache()
    return True


def _create_azure(location: Any, rel: str, data: bytes) -> bool:
    """upload_blob with overwrite=False, which sends If-None-Match: * (Azure, and Azurite,
    answer 409 BlobAlreadyExists when the blob exists; adlfs raises FileExistsError)."""
    fs = location.fs
    try:
        fs.pipe_file(location._full(rel), data, mode="create")
    except FileExistsError:
        return False
    finally:
        fs.invalidate_cache()
    return True


def _create_gcs(location: Any, rel: str, data: bytes) -> bool:
    """An upload with ifGenerationMatch=0 (GCS, and fake-gcs-server, answer 412 when the
    object exists; gcsfs raises FileExistsError). The request is made here rather than by
    gcsfs's ``pipe_file(mode="create")``, which on a zonal bucket writes over gRPC without the
    condition (it overwrites); this one always carries it. A multipart upload, not a media
    one: fake-gcs-server checks the condition on multipart uploads only."""
    from urllib.parse import quote

    from fsspec.asyn import sync

    fs = location.fs
    path = location._full(rel)
    bucket, key, _ = fs.split_path(path)
    boundary = "==parallel-run=="  # never in the JSON of a claim or a lease
    head = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            f"{json.dumps({'name': key})}\r\n--{boundary}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n")
    body = head.encode() + data + f"\r\n--{boundary}--".encode()
    url = f"{fs._location}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
    try:
        sync(fs.loop, fs._call, "POST", url, uploadType="multipart", ifGenerationMatch="0",
             data=body, headers={"Content-Type": f'multipart/related; boundary="{boundary}"'})
    except FileExistsError:
        return False
    finally:
        fs.invalidate_cache(path)
    return True


class OutputLock:
    """The lease on one output location for one run of a job.

    ``acquire()`` takes it or raises :class:`OutputInUse` naming the holder; a run that is
    already the holder (an Airflow task of the same DAG run, a retry) takes it again.
    ``start_renewing()`` keeps it alive from a thread until ``release()``.
    """

    def __init__(self, location: OutputLocation, holder: str, job: str = "",
                 ttl: float = DEFAULT_TTL, pid_bound: bool = True) -> None:
        self.location = location
        self.ttl = ttl
        self.lease = Lease(holder, pid_started=_process_started(os.getpid()) or 0.0, job=job,
                           pid_bound=pid_bound)
        self.previous: Lease | None = None  # a dead holder's lease this one replaced
        self.atomic = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _fresh(self) -> bytes:
        self.lease.expires = time.time() + self.ttl
        return self.lease.to_json()

    def read(self) -> Lease | None:
        data = self.location.read_bytes(LOCK)
        if data is None:
            return None
        lease = Lease.from_json(data)
        if lease is None:  # torn: held for a full ttl from now, as its writer may be alive
            lease = Lease("unknown", host="an unknown host", pid=0, expires=self._torn_expiry(),
                          token="torn", job=f"its lock {LOCK} is torn: being written, or "
                                            "left by a crash; it expires after the lease time")
        return lease

    def _torn_expiry(self) -> float:
        if isinstance(self.location, LocalLocation):
            try:
                return self.location.path(LOCK).stat().st_mtime + self.ttl
            except OSError:
                pass
        return time.time() + self.ttl

    def acquire(self) -> None:
        for _ in range(20):
            made = create_exclusive(self.location, LOCK, self._fresh())
            if made is None:  # no atomic create: check, then write (best effort)
                self.atomic = False
                current = self.read()
                if current is None or current.holder == self.lease.holder or current.is_dead(time.time()):
                    self.previous = current if current and current.holder != self.lease.holder else None
                    self.location.write_atomic(LOCK, self._fresh())
                    return
                raise self._in_use(current)
            if made:
                return
            if self._take(self.read()):
                return
            time.sleep(0.02)
        raise OutputInUse(f"output {self.location.display()}: the lock {LOCK} keeps changing; "
                          "another job is starting there")

    def _take(self, current: Lease | None) -> bool:
        """Take ``current`` over when it is ours or dead; False to look again."""
        if current is None:
            return False  # released in between: create again
        if current.holder == self.lease.holder:
            self.location.write_atomic(LOCK, self._fresh())
            return True
        if not current.is_dead(time.time()):
            raise self._in_use(current)
        if not create_exclusive(self.location, TAKEOVER + current.token, self.lease.token.encode()):
            return False  # another job took this dead lease over first
        self.previous = current
        self.location.write_atomic(LOCK, self._fresh())
        self.location.remove(TAKEOVER + current.token)
        return True

    def _in_use(self, current: Lease) -> OutputInUse:
        what = f" ({current.job})" if current.job else ""
        return OutputInUse(f"output folder in use by {current.describe()}{what}: one output "
                           f"holds one live job; wait for it, or give another --output")

    def renew(self) -> bool:
        """Push the expiry on; False when the lease was lost (taken over after expiring).
        Tasks of one holder (an Airflow run's nodes) renew it in turn."""
        current = self.read()
        if current is None or current.holder != self.lease.holder:
            return False
        self.location.write_atomic(LOCK, self._fresh())
        return True

    def start_renewing(self) -> None:
        def renew() -> None:
            while not self._stop.wait(self.ttl / 4):
                try:
                    if not self.renew():
                        return
                except Exception:  # a store that is down for a moment: try at the next beat
                    continue

        self._thread = threading.Thread(target=renew, name="output-lock", daemon=True)
        self._thread.start()

    def stop_renewing(self) -> None:
        """Stop the renewing thread and keep the lease: another process of the same holder
        (the next Airflow task of the run) takes it on."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def release(self) -> None:
        self.stop_renewing()
        current = self.read()
        if current is not None and current.holder == self.lease.holder:
            self.location.remove(LOCK)
