"""Where each log for people lives under ``<output>/logs`` (the layout Azure ML's
ParallelRunStep users know), and the pieces of its lines.

These files are written for people only: no stage reads them back. What stages tell each
other goes through events.py (tries and errors) and the records of results.py.
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

JOB_RESULT = "logs/job_result.txt"
JOB_RESULT_JSON = "logs/job_result.json"  # the same, for programs (reduce.JobResult.to_dict)
JOB_PROGRESS = "logs/job_progress_overview.txt"
MASTER_ROLE = "logs/sys/master_role.txt"
USER_ERROR_SUMMARY = "logs/user/error.txt"
PROCESSED_MINI_BATCHES = "logs/sys/job_report/processed_mini_batches.csv"
JOB_REPORT = "logs/job_report.html"


def node_ip() -> str:
    """This machine's address, as Azure names log folders; loopback when it has none."""
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        address = "127.0.0.1"
    return address


def process_name(node_index: int, process_count_per_node: int, worker_index: int) -> str:
    """``processNNN``, unique across the job (replacements keep the name)."""
    return f"process{node_index * process_count_per_node + worker_index:03d}"


def sys_node_log(ip: str, process: str) -> str:
    return f"logs/sys/node/{ip}/{process}.txt"


def user_stdout(ip: str, process: str) -> str:
    return f"logs/user/stdout/{ip}/{process}.stdout.txt"


def user_stderr(ip: str, process: str) -> str:
    return f"logs/user/stderr/{ip}/{process}.stderr.txt"


def user_error(ip: str, process: str) -> str:
    return f"logs/user/error/{ip}/{process}.txt"


def entry_script_log(ip: str, process: str) -> str:
    return f"logs/user/entry_script_log/{ip}/{process}.log.txt"


# An error event in logs/user/error/<node>/<process>.txt starts with this mark, then one line:
# "<time> <process> pid <pid> <what>: <error>", then the traceback or stack if there is one
# (rendered by events.ErrorEvent.block).
ERROR_EVENT = "=== "


def process_logs(ip: str, process: str) -> tuple[str, ...]:
    """Every log file that one worker process (and its node) writes."""
    return (sys_node_log(ip, process), user_stdout(ip, process), user_stderr(ip, process),
            user_error(ip, process), entry_script_log(ip, process))


def count(number: int | None) -> str:
    """A count for a log line; rows of a CSV are not known before they are read."""
    return "an unknown number of" if number is None else str(number)


def timestamp(epoch: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def printable(text: str) -> str:
    """``text`` with what cannot be UTF-8 escaped: a file name that is not UTF-8 (``caf\\xe9``,
    read by Python as a lone surrogate) shows as its bytes, ``caf\\xe9``, instead of making
    the log that names it impossible to write."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape") if _only_escapes(text) else None
        if raw is not None:
            return raw.decode("utf-8", "backslashreplace")
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _only_escapes(text: str) -> bool:
    """Whether every lone surrogate of ``text`` stands for a byte (as os.fsdecode makes them)."""
    return all(not 0xD800 <= ord(ch) <= 0xDFFF or 0xDC80 <= ord(ch) <= 0xDCFF for ch in text)


def encoded(text: str) -> bytes:
    """A log's text as UTF-8, escaped where it must be (see :func:`printable`)."""
    return printable(text).encode("utf-8")


def line(text: str) -> str:
    return f"{timestamp()} {text}\n"
