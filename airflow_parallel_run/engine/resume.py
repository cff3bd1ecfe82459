"""What earlier runs of a node's shard finished, so that a run again does only the rest.

A mini-batch counts as done when its record says OK, unless one of its local input files
changed after it ran (records made with versions carry ``finished_at``): then it runs again.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..plan import iter_plan
from ..results import OK, MiniBatchRecord, read_records
from ..storage import OutputLocation


def finished_earlier(location: OutputLocation, indices: range, node_index: int,
                     note: Callable[[str], None]) -> dict[int, MiniBatchRecord]:
    """The OK records of ``indices`` that still hold; ``note`` hears of any that do not."""
    done = {i: r for i, r in read_records(location, indices).items() if r.status == OK}
    changed = _changed_inputs(location, indices, done)
    if changed:
        note(f"node {node_index}: {len(changed)} finished mini-batches have input "
             f"files that changed since they ran (first: {changed[0]}); they run again")
    for index in changed:
        del done[index]
    return done


def _changed_inputs(location: OutputLocation, indices: range,
                    done: dict[int, MiniBatchRecord]) -> list[int]:
    """Finished mini-batches whose input files changed since they ran: they run again."""
    if not any(r.finished_at is not None for r in done.values()):
        return []
    changed = []
    for batch in iter_plan(location, indices):
        record = done.get(batch.index)
        if record is None or record.finished_at is None:
            continue
        try:  # ctime too: a file copied in with an old mtime (cp -p, rsync) is new here
            latest = max(max(st.st_mtime, st.st_ctime) for st in map(os.stat, batch.items))
        except OSError:  # gone: its results stay, as the plan still names it
            continue
        if latest > record.finished_at:
            changed.append(batch.index)
    return changed
