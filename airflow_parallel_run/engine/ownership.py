"""A run's hold on its output: the output lock, and what a dead run left behind.

A run takes the output lock (leases.py) before it touches anything in the output. When the
lock it takes was a dead run's, it first cleans what that run left: its unfinished plan
(``.parallel_run/plan.new-<pid>``), its temp files in the output (``.<name>.<pid>-*.tmp``)
and, when it ran on this host, its node folders and temp files in the temp directory
(``parallel-run-node<k>-<pid>-*``, ``parallel-run-<pid>-*``). Everything a run leaves is
named after its pid so that only a dead pid's leftovers are ever removed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile

from .. import logs
from ..leases import DEFAULT_TTL, Lease, OutputLock, _process_started
from ..storage import STATE_DIR, OutputLocation

PLAN_NEW = "plan.new-"  # + the planner's pid: a plan being written


def node_temp_prefix(node_index: int) -> str:
    """The prefix of a node's folder in the temp directory: its pid says whose it is."""
    return f"parallel-run-node{node_index}-{os.getpid()}-"


def temp_file_prefix() -> str:
    """The prefix of a local temp file that is built before it is put into a remote output."""
    return f"parallel-run-{os.getpid()}-"


def take_output(location: OutputLocation, holder: str, job: str = "", ttl: float = DEFAULT_TTL,
                pid_bound: bool = True) -> OutputLock:
    """The output's lock, taken (``OutputInUse`` names the live holder otherwise); what a
    dead holder left is cleaned before the caller touches anything else."""
    lock = OutputLock(location, holder, job=job, ttl=ttl, pid_bound=pid_bound)
    lock.acquire()
    if lock.previous is not None:
        cleaned = clean_after(location, lock.previous)
        if cleaned:
            location.append_text(logs.MASTER_ROLE, logs.line(
                f"the output lock of a run that ended without releasing it ({lock.previous.describe()}) "
                f"was taken over; removed what it left: {', '.join(cleaned)}"))
    return lock


def clean_after(location: OutputLocation, dead: Lease) -> list[str]:
    """Remove what the run of ``dead`` left (see the module's docstring); what was removed."""
    removed: list[str] = []
    if dead.pid <= 0:
        return removed
    if f"{PLAN_NEW}{dead.pid}" in location.listdir(STATE_DIR):
        location.remove(f"{STATE_DIR}/{PLAN_NEW}{dead.pid}")
        removed.append(location.display(f"{STATE_DIR}/{PLAN_NEW}{dead.pid}"))
    # the reducer's output file (and any atomic write) in the making: .<name>.<pid>-<n>.tmp
    mine = re.compile(rf"^\..+\.{dead.pid}-[0-9a-f]+\.tmp$")
    for name in location.listdir(""):
        if mine.match(name):
            location.remove(name)
            removed.append(location.display(name))
    if dead.pid_bound and dead.host == socket.gethostname():
        removed += _clean_temp_dir(dead.pid)
    return removed


def _clean_temp_dir(pid: int) -> list[str]:
    """This host's temp entries of ``pid``, if no live process of that pid can own them."""
    ours = re.compile(rf"^parallel-run-(node\d+-)?{pid}-")
    removed: list[str] = []
    root = tempfile.gettempdir()
    for entry in os.scandir(root):
        if not ours.match(entry.name):
            continue
        try:
            made = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        started = _process_started(pid)
        # a live process with that pid started before the entry was last changed may be its
        # owner (a pid used again): leave it
        if started is not None and (started == 0.0 or started <= made):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                continue
        removed.append(entry.path)
    return removed
