"""What earlier runs of a node's shard finished, so that a run again does only the rest.

A mini-batch counts as done when its record says OK, unless one of its local input files
changed after its run() started (records made with versions carry ``started_at``): then it
runs again. A symbolic link counts as changed when it, or any link on the way to the file
(a linked folder too), is newer than that: a link pointed at another (older) file is another
input.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from ..events import read_events
from ..plan import iter_plan
from ..recovered import recover_tries
from ..results import OK, MiniBatchRecord, read_records
from ..storage import LocalLocation, OutputLocation

# A file's times come from the kernel's coarse clock, which may lag the clock run()'s start
# was read from by a tick (1-10 ms): a change this close after the start still counts.
CLOCK_SLACK = 0.02
_MAX_LINKS = 40  # as many links as the kernel follows before it calls it a loop


def finished_earlier(location: OutputLocation, indices: range, node_index: int,
                     note: Callable[[str], None]) -> dict[int, MiniBatchRecord]:
    """The OK records of ``indices`` that still hold; ``note`` hears of any that do not."""
    done = {i: r for i, r in read_records(location, indices).items() if r.status == OK}
    changed = _changed_inputs(location, indices, done)
    if changed:
        note(f"node {node_index + 1}: {len(changed)} finished mini-batches have input "
             f"files that changed since they ran (first: {changed[0]}); they run again")
    for index in changed:
        del done[index]
    return done


def recover_lost_tries(location: OutputLocation, indices: range, node_index: int) -> None:
    """Log the tries of this node's share that a killed run stored but did not log (a remote
    output's are left to the reducer: this node's staged logs would be uploaded over them)."""
    if isinstance(location, LocalLocation):
        recover_tries(location, read_events(location).tries, indices, node_index)


def _changed_inputs(location: OutputLocation, indices: range,
                    done: dict[int, MiniBatchRecord]) -> list[int]:
    """Finished mini-batches whose input files changed since their run() started."""
    if not any(r.started_at is not None for r in done.values()):
        return []
    changed = []
    folders: dict[str, float] = {}
    for batch in iter_plan(location, indices):
        record = done.get(batch.index)
        if record is None or record.started_at is None:
            continue
        try:
            latest = max(max(last_change(path), links_to_folder(os.path.dirname(path), folders))
                         for path in batch.items)
        except OSError:  # gone: its results stay, as the plan still names it
            continue
        if latest > record.started_at - CLOCK_SLACK:
            changed.append(batch.index)
    return changed


def last_change(path: str) -> float:
    """The latest modification or status change of the file and of every symbolic link on
    the way to it. ctime too: a file copied in with an old mtime (cp -p, rsync) is new here."""
    latest = 0.0
    for _ in range(_MAX_LINKS):
        st = os.lstat(path)
        latest = max(latest, st.st_mtime, st.st_ctime)
        if not stat.S_ISLNK(st.st_mode):
            return latest
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    raise OSError(f"{path}: too many levels of symbolic links")


def links_to_folder(folder: str, known: dict[str, float]) -> float:
    """The latest change of a symbolic link among ``folder`` and the folders above it (an
    input folder that is a link pointed elsewhere holds other files); ``known`` caches it."""
    if folder in known:
        return known[folder]
    parent = os.path.dirname(folder)
    latest = 0.0 if parent == folder else links_to_folder(parent, known)
    st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode):
        latest = max(latest, st.st_mtime, st.st_ctime)
    known[folder] = latest
    return latest
