"""The template that a table job's workers are forked from, pandas and pyarrow imported.

Importing pandas and pyarrow costs a worker about a third of a CPU-second, and a table job's
workers all import them. So a node whose input is a table starts one template per node: a
fresh interpreter of its own (``python -m airflow_parallel_run.engine.template``, with the
workers' environment and folder), which imports them once and then forks every worker.
The node itself is never forked: it has threads (the planner, the log pump, the lease
renewal), and a fork copies their locks in whatever state they are. The template runs no
Python thread; numpy's and pyarrow's own helper threads are fork-aware (they are made again
in a child that needs them).

How a worker is made, so that it is the node's child exactly as a spawned worker is::

    node --request + 3 fds--> template --fork--> go-between --fork--> worker
                                          (exits at once: the worker, orphaned, goes to the
                                           node's process, the subreaper of its tree)

The request names the worker, its environment and folder, the node's pid; the three file
descriptors are the worker's end of its socket pair, its stdout and its stderr. The worker
leads its own session, takes its environment and folder, waits until the node is its parent
(then it dies with the node, as a spawned worker does) and runs :func:`worker.main`. The
node waits for it, reads its exit code and kills it as any child of its own
(:class:`ForkedWorker`). Only where the node is a subreaper (reaper.py); elsewhere, and
whenever the template is gone or does not answer, workers are spawned as before.

What differs from a spawned worker: the modules the template imported are imported already,
``/proc/<pid>/environ`` shows the template's environment (``os.environ`` is the worker's), and
the workers share the template's hash seed. Python's and numpy's random generators are
seeded afresh in each worker.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

REPLY = struct.Struct("q")
ANSWER_TIMEOUT = 120.0  # seconds for the template to import and fork: it may start under load
ADOPTION_TIMEOUT = 5.0  # seconds for a worker to become the node's child
PRELOAD = ("pandas", "pyarrow", "pyarrow.csv", "pyarrow.parquet", "pyarrow.json",
           "pyarrow.pandas_compat", "pyarrow.vendored.version",  # to_pandas, on its first call
           "airflow_parallel_run.inputs.tabular.delimited",
           "airflow_parallel_run.inputs.tabular.jsonl",
           "airflow_parallel_run.inputs.tabular.parquet", "airflow_parallel_run.engine.worker")


def available() -> bool:
    """Workers can be forked from a template here (Linux: fork, descriptor passing)."""
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


class ForkedWorker:
    """A worker forked by the template and adopted by this process: the part of
    ``subprocess.Popen`` the node uses (``processes.WorkerProcess``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: it is gone, how is not known
                self.returncode = -signal.SIGKILL
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            time.sleep(0.005)
        return code

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class WorkerTemplate:
    """The node's side: starts the template, asks it for workers, ends it."""

    def __init__(self, env: dict[str, str], cwd: str) -> None:
        """``env``, ``cwd``: the template's (its ``sys.path`` is a spawned worker's: same
        interpreter, same folder, same PYTHONPATH)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "airflow_parallel_run.engine.template",
                 str(theirs.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=cwd, env=env, pass_fds=(theirs.fileno(),), start_new_session=True,
                close_fds=True)
        finally:
            theirs.close()
        ours.settimeout(ANSWER_TIMEOUT)
        self.sock: socket.socket | None = ours
        self._lock = threading.Lock()

    def fork(self, name: str, env: dict[str, str], cwd: str, fds: list[int]) -> ForkedWorker | None:
        """A worker forked from the template, now this process's child; None when the
        template is gone or does not answer (it is ended then: the caller spawns instead)."""
        request = json.dumps({"name": name, "env": env, "cwd": cwd, "node": os.getpid()})
        with self._lock:
            if self.sock is None:
                return None
            try:
                socket.send_fds(self.sock, [request.encode("utf-8", "surrogateescape")], fds)
                reply = self.sock.recv(REPLY.size)
            except OSError:
                reply = b""
            if len(reply) != REPLY.size or (pid := REPLY.unpack(reply)[0]) <= 0:
                self._end()
                return None
        return ForkedWorker(pid)

    def close(self) -> None:
        with self._lock:
            self._end()

    def _end(self) -> None:
        """Killed: it holds nothing to save, and an interpreter with pandas takes a while to
        exit on its own (the node would wait for that at the end of every job)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.popen.returncode is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)  # with a go-between, if one is left
            except ProcessLookupError:
                pass
            self.popen.wait()


# -- the template process -----------------------------------------------------------------------


def _preload() -> None:
    """What every table worker imports; a module that fails to import is the worker's to
    report (it imports it again, as a spawned worker would)."""
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001, S112 - see the docstring
            continue
    gc.freeze()  # the workers' collector never touches (and so never copies) these objects


def _fork_worker(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """Serve one request: in the template, None once the worker runs (or the node is gone);
    in the worker, its request and file descriptors."""
    data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
    if not data:  # the node closed its end
        raise EOFError
    request = json.loads(data.decode("utf-8", "surrogateescape"))
    reader, writer = os.pipe()
    middle = os.fork()
    if middle == 0:  # the go-between: fork the worker, say its pid, and go
        os.close(reader)
        try:
            worker = os.fork()
        except OSError:  # the template answers -1: the node spawns this worker instead
            os._exit(1)
        if worker == 0:
            os.close(writer)
            return request, fds
        os.write(writer, REPLY.pack(worker))
        os._exit(0)
    os.close(writer)
    answer = os.read(reader, REPLY.size)
    os.close(reader)
    os.waitpid(middle, 0)  # gone: the worker is the node's child by now
    for fd in fds:
        os.close(fd)
    sock.send(answer if len(answer) == REPLY.size else REPLY.pack(-1))
    return None


def _become_worker(request: dict[str, Any], fds: list[int]) -> int:
    """In the forked worker: what a spawned worker starts with, then the worker's main."""
    conn, out, err = fds
    os.setsid()
    for fd, target in ((out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    if "numpy.random" in sys.modules:  # a fresh interpreter seeds its own (random.py does too)
        sys.modules["numpy.random"].seed()
    node = int(request["node"])
    deadline = time.monotonic() + ADOPTION_TIMEOUT
    while os.getppid() != node:  # the go-between exits: we are handed to the node
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.001)
    from . import worker

    return worker.main([worker.__file__, request["name"], str(conn), str(node)])


def main(argv: list[str]) -> int:
    fd, parent = int(argv[1]), int(argv[2])
    from .worker import _die_with_parent

    _die_with_parent(parent)
    sock = socket.socket(fileno=fd)
    _preload()
    while True:
        try:
            made = _fork_worker(sock)
        except (EOFError, OSError):
            return 0
        if made is not None:
            sock.close()
            return _become_worker(*made)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
