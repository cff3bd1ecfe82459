"""The entry script's own messages, copied from its workers' log files into the node task's log.

Workers write ``logs/user/entry_script_log/...`` and ``logs/user/error/...`` on the node's
machine (and upload them to the output); Airflow ships only the task log. So the node task
reads the new lines of those files every few seconds and logs: the entry script's WARNING and
above (everything when ``logging_level`` is DEBUG), and the first traceback of each kind of
error. The volume is bounded: past MAX_LINES the task log says how many lines it left out.
"""

from __future__ import annotations

import re
from typing import Any

from .. import logs

MAX_LINES = 500  # lines copied per node task; the rest stays in the files under logs/
LOUD = ("WARNING", "ERROR", "CRITICAL")


class ScriptLog:
    """Follows one node's worker log files; :meth:`poll` copies what is new to ``log``."""

    def __init__(self, log: Any, node: Any, debug: bool) -> None:
        self.log = log
        self.node = node
        self.debug = debug
        self.offsets: dict[str, int] = {}
        self.copied = 0
        self.dropped = 0
        self.errors_seen: set[str] = set()
        self.keep_following = False  # a loud line's continuation (its traceback) follows it

    def _files(self) -> list[tuple[str, str]]:
        cache = getattr(self.node, "cache", None)
        if cache is None:
            return []
        work, ip = cache.launcher.work, self.node.spec.ip
        found = []
        for slot in self.node.pool.slots:
            found.append(("script", str(work.path(logs.entry_script_log(ip, slot.name)))))
            found.append(("error", str(work.path(logs.user_error(ip, slot.name)))))
        return found

    def _new_lines(self, path: str) -> list[str]:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                handle.seek(self.offsets.get(path, 0))
                text = handle.read()
        except OSError:
            return []
        complete = text[:text.rfind("\n") + 1]  # a line still being written waits
        self.offsets[path] = self.offsets.get(path, 0) + len(complete.encode("utf-8"))
        return complete.splitlines()

    def poll(self) -> None:
        for kind, path in self._files():
            lines = self._new_lines(path)
            if kind == "script":
                self._script_lines(lines)
            else:
                self._error_blocks(lines)

    def _script_lines(self, lines: list[str]) -> None:
        for line in lines:
            parts = line.split(" ", 4)
            level = parts[2] if len(parts) > 3 else ""
            if level in logs_levels():
                self.keep_following = self.debug or level in LOUD
            if self.keep_following:
                self._emit("entry script: %s", line)

    def _error_blocks(self, lines: list[str]) -> None:
        """The first block of each kind of error: the line after the marker says which."""
        showing = False
        for line in lines:
            if line.startswith(logs.ERROR_EVENT):
                kind = error_kind(line)
                showing = kind not in self.errors_seen
                self.errors_seen.add(kind)
            if showing:
                self._emit("entry script error: %s", line)

    def _emit(self, fmt: str, line: str) -> None:
        if self.copied < MAX_LINES:
            self.copied += 1
            self.log.warning(fmt, line)
        else:
            self.dropped += 1

    def close(self) -> None:
        self.poll()
        if self.dropped:
            self.log.warning("entry script: %d more lines not copied here (at most %d per node "
                             "task): see logs/user/ under the output", self.dropped, MAX_LINES)


def error_kind(head: str) -> str:
    """What kind of error an event's line tells of: its exception type, else its text with
    numbers (mini-batch, pid, time) left out."""
    rest = head.split(" ", 4)[-1]
    found = re.search(r"\b(\w+(?:Error|Exception|Timeout|Exit|Interrupt))\b", rest)
    return found.group(1) if found else re.sub(r"\d+", "N", rest)[:200]


def logs_levels() -> tuple[str, ...]:
    return ("DEBUG", "INFO", *LOUD)
