"""What a node writes for people: per-process sys log lines, error events, debug lines,
the job's overview, and (for a remote output) the upload of its staged logs.

Logs go to the node's work folder: the output folder itself, or for a remote output a
local staging folder uploaded every so often and when the node ends.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from .. import events, logs
from ..masking import Masker
from ..progress import OVERVIEW_INTERVAL, write_overview
from ..results import MiniBatchRecord
from ..storage import LocalLocation, RemoteLocation
from .messages import MiniBatchDone
from .outcomes import Outcomes
from .pool import Slot
from .work_queue import Task

if TYPE_CHECKING:
    from .node import NodeSpec

LOG_UPLOAD_INTERVAL = 30.0  # seconds between uploads of a remote output's logs


class NodeLogs:
    """The logs one node writes, kept open while it runs."""

    def __init__(self, spec: NodeSpec, masker: Masker) -> None:
        self.spec = spec
        self.config = spec.config
        self.location = spec.output
        self.masker = masker
        self._work = spec.output if isinstance(spec.output, LocalLocation) else None
        self._log_fds: dict[str, int] = {}
        self.published_at = 0.0
        self.overview_at = 0.0

    @property
    def work(self) -> LocalLocation:
        assert self._work is not None, "a remote output's staging folder is set by stage_in()"
        return self._work

    @property
    def staged(self) -> bool:
        """The logs are written to a local staging folder, not the output itself."""
        return self.location.is_remote and self._work is not None

    def stage_in(self, cache_dir: str, process_names: list[str]) -> LocalLocation:
        """The folder the logs (and the workers' output) are written to, made if needed."""
        if self._work is None:
            self._work = LocalLocation(os.path.join(cache_dir, "staging"))
            self._fetch_earlier_logs(process_names)
        return self._work

    def close(self, publish: bool = True) -> None:
        """Close the open logs and mask secrets in every log written here; upload them if
        staged (and ``publish``: not to a store that stopped answering)."""
        self._close_logs()
        if self._work is not None:
            self.masker.scrub_tree(str(self._work.path("logs")))
        if self.staged and publish:
            self.publish_logs()

    def master(self, text: str) -> None:
        self.location.append_text(logs.MASTER_ROLE, logs.line(self.masker.mask(text)))

    def warning(self, process: str, text: str) -> None:
        self._append_log(logs.sys_node_log(self.spec.ip, process), logs.line(f"WARNING {text}"))

    def shutdown_killed(self, process: str, seconds: float, pid: int) -> None:
        text = f"{process}: shutdown() did not return within {seconds:.0f} s; its worker pid={pid} was killed"
        self.master(text)
        self.warning(process, text)

    def init_error(self, process: str, pid: int, error: str) -> None:
        self.error_event(process, pid, None, error)

    def _append_log(self, rel: str, text: str) -> None:
        """Append a line to one of this node's logs through a descriptor kept open."""
        fd = self._log_fds.get(rel)
        if fd is None:
            path = self.work.path(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._log_fds[rel] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, self.masker.mask(text).encode("utf-8", "backslashreplace"))

    def _close_logs(self) -> None:
        for fd in self._log_fds.values():
            os.close(fd)
        self._log_fds.clear()

    def mini_batch_done(self, slot: Slot, pid: int, task: Task, record: MiniBatchRecord,
                        message: MiniBatchDone) -> None:
        """run() returned: its sys line, and what the worker found wrong with its results."""
        self.sys_line(slot, task, "ok", message.run_seconds, record)
        if message.failed:
            self.error_event(slot.name, pid, task,
                             f"run() returned {message.succeeded} results for "
                             f"{message.total} items: {message.failed} items count as failed")
        if message.warning:
            self.warning(slot.name, message.warning)

    def debug(self, process: str, text: str) -> None:
        """Worker life and dispatch details, with logging_level DEBUG only."""
        if self.config.logging_level == "DEBUG":
            self._append_log(logs.sys_node_log(self.spec.ip, process), logs.line(f"DEBUG {text}"))

    def error_event(self, process: str, pid: int | None, task: Task | None, error: str,
                    details: str = "") -> None:
        """An error of a try (``task``), or of init() when there is no task."""
        events.write_error(self.work, events.ErrorEvent.now(
            self.spec.node_index, self.spec.ip, process, pid, self.masker.mask(error),
            self.masker.mask(details),
            task.batch.index if task else None, task.try_number if task else None))

    def _fetch_earlier_logs(self, process_names: list[str]) -> None:
        """A node task run again appends to its processes' logs, not over them."""
        assert isinstance(self.location, RemoteLocation)
        for name in process_names:
            for rel in (*logs.process_logs(self.spec.ip, name), events.event_log(self.spec.ip, name)):
                target = self.work.path(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                self.location.get_file(rel, str(target))

    def tick(self, outcomes: Outcomes) -> bool:
        """Upload the staged logs and rewrite the overview when due; True when it was rewritten."""
        now = time.monotonic()
        if self.staged and now - self.published_at > LOG_UPLOAD_INTERVAL:
            self.publish_logs()
        return now - self.overview_at >= OVERVIEW_INTERVAL and self.write_overview(outcomes)

    def write_overview(self, outcomes: Outcomes) -> bool:
        """Share this node's counts, and rewrite the job's overview from everyone's.

        False when there is no plan to tell of: started early, and the job did not come to run.
        """
        self.overview_at = time.monotonic()
        if self.spec.plan is None:
            return False
        outcomes.publish()
        write_overview(self.location, self.spec.plan, outcomes.job_totals(fresh=True))
        return True

    def publish_logs(self) -> None:
        assert isinstance(self.location, RemoteLocation)
        self.published_at = time.monotonic()
        self.masker.scrub_tree(str(self.work.path("logs")))
        self.location.upload_tree(str(self.work.root))

    def _size(self, task: Task) -> int:
        return task.count_items(self.spec.datasets)

    def sys_line(self, slot: Slot, task: Task, status: str, run_seconds: float,
                 record: MiniBatchRecord | None, pid: int | None = None) -> None:
        """The try's event, and its line for people rendered from it."""
        now = time.monotonic()
        total = record.total if record else self._size(task)
        event = events.TryEvent(
            self.spec.node_index, self.spec.ip, slot.name,
            pid or (slot.process.pid if slot.process else None), task.batch.index,
            task.try_number, status, total, record.succeeded if record else 0,
            time.time() - (now - slot.since), now - slot.since, run_seconds)
        self._append_log(events.event_log(self.spec.ip, slot.name), events.to_line(event))
        self._append_log(logs.sys_node_log(self.spec.ip, slot.name), event.sys_line())
