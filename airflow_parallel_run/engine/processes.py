"""Starting a worker process, and killing it with every process it started.

Each worker leads its own session (so its process group holds what it started), and is
watched through a pidfd, so the node learns of its death at once, whatever killed it. Its
spec (secrets and storage options included) is the first message on its connection: it is
never in a file. A table job's worker is forked from the node's template (template.py),
where pandas and pyarrow are imported already; any other is a fresh interpreter.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import psutil

from .log_pump import LogPump
from .template import WorkerTemplate


def _log_fd(path: str, pump: LogPump | None) -> int:
    if pump is not None:
        return pump.pipe_to(path)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


class WorkerProcess:
    """One running worker: its process, its message connection and its pidfd."""

    def __init__(self, name: str, spec_json: str, stdout_path: str, stderr_path: str,
                 cwd: str, env: dict[str, str], pump: LogPump | None = None,
                 on_killed: Callable[[int], None] | None = None,
                 template: WorkerTemplate | None = None) -> None:
        """``pump``: stdout and stderr go through it (masked) rather than straight to the files;
        ``on_killed(pid)`` ends, once the worker is killed, what left its tree (reaper.py);
        ``template``: fork the worker from it (spawned as a fresh interpreter if it cannot)."""
        self.name = name
        self.on_killed = on_killed
        parent_sock, child_sock = socket.socketpair()
        child_fd = child_sock.fileno()
        os.makedirs(os.path.dirname(stdout_path), exist_ok=True)
        os.makedirs(os.path.dirname(stderr_path), exist_ok=True)
        out, err = (_log_fd(path, pump) for path in (stdout_path, stderr_path))
        try:
            forked = template.fork(name, env, cwd, [child_fd, out, err]) if template else None
            if template is not None and forked is None:
                # A pair the template may still hand to a worker is never used: that worker
                # would read no spec from it, and exit.
                parent_sock.close()
                child_sock.close()
                parent_sock, child_sock = socket.socketpair()
                child_fd = child_sock.fileno()
            self.popen: Any = forked or subprocess.Popen(
                [sys.executable, "-m", "airflow_parallel_run.engine.worker", name,
                 str(child_fd), str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd, env=env,
                pass_fds=(child_fd,), start_new_session=True, close_fds=True,
            )
        finally:
            os.close(out)
            os.close(err)
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        try:
            self.conn.send_bytes(spec_json.encode("utf-8", "surrogateescape"))
        except OSError:  # it died at once: the node sees its exit next
            pass
        self.pid = self.popen.pid
        try:
            self.pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd here: the node polls instead
            self.pidfd = None

    def waitables(self) -> list:
        return [self.conn] if self.pidfd is None else [self.conn, self.pidfd]

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def wait(self, timeout: float) -> None:
        """Give a worker that is exiting up to ``timeout`` seconds to end."""
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def describe_exit(self) -> str:
        code = self.popen.returncode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def dump_stack(self) -> None:
        """Ask the worker to write its threads' stacks to its error log (faulthandler)."""
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return
        time.sleep(0.2)

    def kill_tree(self) -> None:
        """SIGKILL the worker, its process group and every descendant, then reap it."""
        try:
            descendants = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for child in descendants:  # those that left the group (setsid) too
            try:
                child.kill()
            except psutil.Error:
                pass
        try:
            self.popen.kill()
        except ProcessLookupError:
            pass
        self.popen.wait()
        psutil.wait_procs(descendants, timeout=5)
        if self.on_killed is not None:
            self.on_killed(self.pid)
        self.close()

    def close(self) -> None:
        self.conn.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
