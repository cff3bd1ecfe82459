"""The reducer: judge the whole job from its durable records and assemble the output file.

Reads every mini-batch record in index order (so the output follows input order), copies the
results into a temporary file, and renames it to ``append_row_file_name`` only when the job
succeeded: a reader sees the whole file or none.

Then it writes the job's final logs from records and events only, never from a log written
for people::

    records (results.py) --> Totals --> JobResult --+--> logs/job_result.txt   (for people)
                                                    +--> logs/job_result.json  (to_dict: for
                                                    |                          programs)
    events (events.py) -----------------------------+--> logs/sys/job_report/processed_mini_batches.csv
                                                    +--> logs/user/error.txt
                                                    +--> logs/job_report.html  (report.py)
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import logs
from .config import ParallelRunConfig
from .events import ErrorEvent, TryEvent, read_events
from .plan import JOB_FILE, JobPlan, iter_plan, state_format_error
from .progress import write_overview
from .recovered import recover_tries
from .results import RESULTS_DIR, Records
from .storage import STATE_DIR, OutputLocation, describe_os_error
from .thresholds import Totals, final_verdict

NODE_STARTS_DIR = f"{STATE_DIR}/node_starts"  # node-<index>.json: when each node last started
REDUCED_FILE = f"{STATE_DIR}/reduced.json"  # when the job was last judged

if TYPE_CHECKING:
    from .report import ErrorGroup

PROCESSED_MINI_BATCHES = logs.PROCESSED_MINI_BATCHES
PROCESSED_COLUMNS = ("node", "ip", "process", "pid", "mini_batch", "try", "status", "total",
                     "succeeded", "failed", "start", "duration_s", "run_time_s", "recovered")


@dataclass
class JobResult:
    """How a job ended: what the CLI prints and what an Airflow reducer acts on."""

    success: bool
    reason: str | None
    totals: Totals
    mini_batch_count: int
    item_count: int | None
    output_dir: str
    output_file: str | None = None
    missing_mini_batches: int = 0
    elapsed_seconds: float = 0.0
    resumed: bool = False
    notes: list[str] = field(default_factory=list)
    attempt_seconds: float | None = None  # since this attempt began (None: as elapsed_seconds)

    def elapsed(self) -> str:
        """This attempt's time and, when it differs, the time since the job was planned."""
        if self.attempt_seconds is None or self.elapsed_seconds - self.attempt_seconds < 1:
            return f"{self.elapsed_seconds:.1f} s"
        return (f"{self.attempt_seconds:.1f} s this attempt, {self.elapsed_seconds:.1f} s "
                "since the job was planned")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["totals"] = Totals(**data["totals"])
        return cls(**known)

    @property
    def status(self) -> str:
        return "SUCCESS" if self.success else "FAILED"

    def counts(self) -> dict[str, list[tuple[str, int | None]]]:
        """The job's numbers by what they count (None: not known), as its logs show them."""
        t = self.totals
        return {
            "mini-batches": [("planned", self.mini_batch_count), ("done", t.mini_batches_done),
                             ("failed", t.failed_mini_batches),
                             ("without a result", self.missing_mini_batches)],
            "items": [("planned", self.item_count), ("succeeded", t.succeeded_items),
                      ("failed", t.failed_items)],
        }

    def failure_lines(self) -> list[str]:
        """What failed and where to read why; a warning when nothing succeeded. Empty when
        nothing failed. (With the default thresholds a job whose every item failed succeeds:
        its status alone would hide that.)"""
        t = self.totals
        if not (t.failed_items or t.failed_mini_batches):
            return []
        lines = [f"failed: {t.failed_items} items in {t.failed_mini_batches} mini-batches; "
                 f"see {logs.USER_ERROR_SUMMARY} for why"]
        if t.succeeded_items == 0:
            lines.append("warning: every item failed, none succeeded")
        return lines

    def summary(self) -> str:
        t = self.totals
        text = (f"{self.status}: {t.succeeded_items} items succeeded, {t.failed_items} failed; "
                f"{t.mini_batches_done} of {self.mini_batch_count} mini-batches done, "
                f"{t.failed_mini_batches} failed; {self.elapsed()}")
        if self.resumed:
            text += " (resumed an earlier run of the same job)"
        if self.reason:
            text += f"\nreason: {self.reason}"
        for line in self.failure_lines():
            text += f"\n{line}"
        if self.output_file:
            text += f"\noutput: {self.output_file}"
        else:
            text += f"\noutput folder: {self.output_dir}"
        return text


def reduce_job(location: OutputLocation, config: ParallelRunConfig, job_plan: JobPlan,
               stop_reasons: list[str], if_missing: str | None = None) -> JobResult:
    """Count every record, judge the job, write the output file and the job's final logs.
    ``if_missing``: the reason to give when a mini-batch has no result (a node was lost)."""
    refusal = state_format_error(location, location.read_json(JOB_FILE))
    if refusal is not None:
        raise refusal
    count = job_plan.mini_batch_count
    name = config.append_row_file_name
    tmp = location.local_temp(name) if config.output_action == "append_row" else None
    ignored: list[str] = []
    try:
        totals, missing = _count_and_assemble(location, count, tmp, ignored)
    except OSError as exc:
        if tmp is None:
            raise
        # The output file cannot be written (a full disk): the job fails, and its temp file
        # goes, which leaves room for the logs that say why.
        _remove_quietly(tmp)
        tmp = None
        stop_reasons = [f"the output file cannot be written: "
                        f"{describe_os_error(exc, location.display(name))}", *stop_reasons]
        totals, missing = _count_and_assemble(location, count, None, ignored)
    reason = next((r for r in stop_reasons if r), None)
    if reason is None and missing:
        reason = if_missing or (f"{missing} of {count} mini-batches have no result: a node did "
                                "not finish (see logs/sys/master_role.txt)")
    if reason is None:
        reason = final_verdict(config, totals, count)
    output_file = _publish_output(location, name, tmp, success=reason is None)
    result = JobResult(reason is None, reason, totals, count, _item_count(job_plan, totals, missing),
                       location.display(), output_file, missing, time.time() - job_plan.started,
                       job_plan.resumed)
    for name in sorted(set(ignored)):
        result.notes.append(f"{location.display(f'{RESULTS_DIR}/{name}')} ignored: "
                            "this job did not write that record log")
        location.append_text(logs.MASTER_ROLE, logs.line(f"WARNING {result.notes[-1]}"))
    result.attempt_seconds = time.time() - attempt_started(location, job_plan)
    try:
        write_final_logs(location, job_plan, result)
    except OSError as exc:  # a full disk: at least job_result.txt, if it still fits
        result.notes.append(f"the job's logs could not all be written: "
                            f"{describe_os_error(exc, location.display('logs'))}")
        with contextlib.suppress(OSError):
            write_job_result(location, result, None)
    location.write_json(REDUCED_FILE, {"at": time.time()})
    return result


def _item_count(job_plan: JobPlan, totals: Totals, missing: int) -> int | None:
    """The items planned: the rows of a table are known once every mini-batch was read (each
    record counts its rows), so a table's count is given when no mini-batch lacks a result."""
    if job_plan.item_count is not None or missing:
        return job_plan.item_count
    return totals.succeeded_items + totals.failed_items


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def attempt_started(location: OutputLocation, job_plan: JobPlan) -> float:
    """When this attempt began: the plan, or the first node started since the last verdict
    (a node task cleared and run again long after the plan is a new attempt)."""
    last = (location.read_json(REDUCED_FILE) or {}).get("at", 0.0)
    starts = [job_plan.started] + [
        (location.read_json(f"{NODE_STARTS_DIR}/{name}") or {}).get("at", 0.0)
        for name in location.listdir(NODE_STARTS_DIR)]
    return min((t for t in starts if t > last), default=job_plan.started)


def _count_and_assemble(location: OutputLocation, count: int,
                        tmp: str | None, ignored: list[str] | None = None) -> tuple[Totals, int]:
    """Totals of the records and how many mini-batches have none; with ``tmp``, their output
    lines appended there in index order (a DataFrame header once, before the first).
    ``ignored`` gets the record logs left out: this job did not write them."""
    totals = Totals()
    missing = 0
    header_written = False
    records = Records(location)
    if ignored is not None:
        ignored += records.ignored
    # a raw descriptor: the records' lines are appended by the kernel (Records.append_to)
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if tmp else None
    try:
        for index in range(count):
            if out is None:
                record = records.record(index)
            else:
                record = records.append_to(index, out, with_header=not header_written)
            if record is None:
                missing += 1
                continue
            totals.add(record)
            header_written = header_written or record.header is not None
    finally:
        records.close()
        if out is not None:
            os.close(out)
    return totals, missing


def _publish_output(location: OutputLocation, name: str, tmp: str | None,
                    success: bool) -> str | None:
    """The output file of a job that succeeded, put in place; where it is."""
    if tmp is not None and success:
        location.put_file(tmp, name)
        return location.display(name)
    if tmp is not None:
        os.unlink(tmp)
    if not success:
        location.remove(name)  # an older run's file must not pass for this one's
    return None


def write_final_logs(location: OutputLocation, job_plan: JobPlan, result: JobResult) -> None:
    """error.txt, processed_mini_batches.csv, job_result.txt/.json, the report, the overview."""
    from .report import write_job_report  # the report's code only where a job ends

    events = read_events(location)
    # a node killed after a record was stored, before its try was logged, and never resumed
    events.tries += recover_tries(location, events.tries, range(job_plan.mini_batch_count))
    for note in events.notes:
        location.append_text(logs.MASTER_ROLE, logs.line(f"reducer: {note}"))
    if job_plan.node_count > 1:
        sharing = sharing_note(location, events.sorted_tries())
        result.notes.append(sharing)
        location.append_text(logs.MASTER_ROLE, logs.line(f"reducer: {sharing}"))
    errors = events.sorted_errors()
    groups = write_error_summary(location, errors)
    write_processed_mini_batches(location, events.sorted_tries())
    pointer = _error_pointer(errors, groups)
    write_job_result(location, result, pointer)
    write_job_report(location, result, events)
    write_overview(location, job_plan, result.totals, result=result.status, reason=result.reason,
                   errors=[pointer] if pointer else None)


def sharing_note(location: OutputLocation, tries: list[TryEvent]) -> str:
    """How many units of work nodes took over, and how many mini-batches ran twice (a slow
    holder and the node that took its unit over both finished them: the last record counts)."""
    from .engine.claims import count_takeovers

    ok: dict[int, int] = {}
    for t in tries:
        if t.status == "ok":
            ok[t.mini_batch] = ok.get(t.mini_batch, 0) + 1
    twice = sum(1 for n in ok.values() if n > 1)
    return (f"work sharing: {count_takeovers(location)} unit(s) taken over from another node, "
            f"{twice} mini-batch(es) ran twice")


def _error_pointer(errors: list[ErrorEvent], groups: list[ErrorGroup]) -> str | None:
    if not errors:
        return None
    return (f"{len(errors)} errors in {len(groups)} groups; most frequent: "
            f"{groups[0].count} x {groups[0].signature}, first in {groups[0].first_where}")


def write_processed_mini_batches(location: OutputLocation, tries: list[TryEvent]) -> None:
    """One CSV row per mini-batch try, in the order given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PROCESSED_COLUMNS)
    writer.writerows(t.csv_row() for t in tries)
    location.write_atomic(PROCESSED_MINI_BATCHES, logs.encoded(buffer.getvalue()))


def _first_item(location: OutputLocation, index: int | None) -> str | None:
    if index is None:
        return None
    batch = next(iter_plan(location, range(index, index + 1)), None)
    return batch.items[0] if batch is not None and batch.items else None


def write_error_summary(location: OutputLocation, errors: list[ErrorEvent]) -> list[ErrorGroup]:
    """logs/user/error.txt: identical errors grouped, then every error in the order given."""
    from .report import group_errors

    groups = group_errors(errors)
    if not errors:
        location.write_atomic(logs.USER_ERROR_SUMMARY, b"no errors\n")
        return groups
    lines = [f"{len(errors)} errors in {len(groups)} groups, most frequent first:"]
    for group in groups:
        item = _first_item(location, group.first.mini_batch)
        lines.append(group.describe() + (f"; first item: {item}" if item else ""))
    lines += ["", "every error, oldest first:", *(e.summary_line() for e in errors)]
    location.write_atomic(logs.USER_ERROR_SUMMARY, logs.encoded("\n".join(lines) + "\n"))
    return groups


def write_job_result(location: OutputLocation, result: JobResult, error_pointer: str | None,
                     report: str = logs.JOB_REPORT, reused: str | None = None) -> None:
    """logs/job_result.txt for people, logs/job_result.json for programs (and the report).
    ``reused``: the result is an earlier run's (what it says), whose ``report`` is elsewhere."""
    lines = [result.status, f"reason: {result.reason or 'none'}"]
    if reused:
        lines.append(reused)
    lines += result.failure_lines()
    lines += [_counts_line(group, counts) for group, counts in result.counts().items()]
    lines += [f"output: {result.output_file or 'none'}",
              f"elapsed: {result.elapsed()}"]
    if error_pointer:
        lines.append(f"see {logs.USER_ERROR_SUMMARY}: {error_pointer}")
    lines.append(f"report: {report}")
    location.write_json(logs.JOB_RESULT_JSON, result.to_dict())
    location.write_atomic(logs.JOB_RESULT, logs.encoded("\n".join(lines) + "\n"))
    location.append_text(logs.MASTER_ROLE, logs.line(f"job result: {lines[0]}; " + "; ".join(lines[1:])))


def _counts_line(group: str, counts: list[tuple[str, int | None]]) -> str:
    """``items: 20 succeeded, 0 failed``; a count not known (rows of a CSV) is said apart."""
    line = f"{group}: " + ", ".join(f"{n} {label}" for label, n in counts if n is not None)
    unknown = [label for label, n in counts if n is None]
    if unknown:
        line += f" ({' and '.join(unknown)}: not known before the rows are read)"
    return line
