"""The reducer: judge the whole job from its durable records and assemble the output file.

Reads every mini-batch record in index order (so the output follows input order), copies the
results into a temporary file, and renames it to ``append_row_file_name`` only when the job
succeeded: a reader sees the whole file or none.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from . import logs
from .config import ParallelRunConfig
from .plan import JobPlan, iter_plan
from .progress import write_overview
from .results import Records
from .storage import OutputLocation
from .thresholds import Totals, final_verdict

ERROR_DIR = "logs/user/error"
SYS_NODE_DIR = "logs/sys/node"
PROCESSED_MINI_BATCHES = logs.PROCESSED_MINI_BATCHES
PROCESSED_COLUMNS = ("node", "ip", "process", "pid", "mini_batch", "try", "status", "total",
                     "succeeded", "failed", "start", "duration_s", "run_time_s")


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

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["totals"] = self.totals.__dict__
        return data

    def summary(self) -> str:
        t = self.totals
        status = "SUCCESS" if self.success else "FAILED"
        text = (f"{status}: {t.succeeded_items} items succeeded, {t.failed_items} failed; "
                f"{t.mini_batches_done} of {self.mini_batch_count} mini-batches done, "
                f"{t.failed_mini_batches} failed; {self.elapsed_seconds:.1f} s")
        if self.resumed:
            text += " (resumed an earlier run of the same job)"
        if self.reason:
            text += f"\nreason: {self.reason}"
        if self.output_file:
            text += f"\noutput: {self.output_file}"
        else:
            text += f"\noutput folder: {self.output_dir}"
        return text


def reduce_job(location: OutputLocation, config: ParallelRunConfig, job_plan: JobPlan,
               stop_reasons: list[str]) -> JobResult:
    """Count every record, judge the job, write the output file and the job's final logs."""
    mini_batch_count = job_plan.mini_batch_count
    append = config.output_action == "append_row"
    name = config.append_row_file_name
    tmp = location.local_temp(name) if append else ""
    totals = Totals()
    missing = 0
    header_written = False
    records = Records(location)
    # a raw descriptor: the records' lines are appended by the kernel (Records.append_to)
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if append else None
    try:
        for index in range(mini_batch_count):
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

    reason = next((r for r in stop_reasons if r), None)
    if reason is None and missing:
        reason = (f"{missing} of {mini_batch_count} mini-batches have no result: a node did "
                  "not finish (see logs/sys/master_role.txt)")
    if reason is None:
        reason = final_verdict(config, totals, mini_batch_count)
    success = reason is None

    output_file = None
    if append and success:
        location.put_file(tmp, name)
        output_file = location.display(name)
    else:
        if append:
            os.unlink(tmp)
        if not success:
            location.remove(name)  # an older run's file must not pass for this one's
    result = JobResult(success, reason, totals, mini_batch_count, job_plan.item_count,
                       location.display(), output_file, missing, time.time() - job_plan.started,
                       job_plan.resumed)
    write_final_logs(location, job_plan, result)
    return result


def write_final_logs(location: OutputLocation, job_plan: JobPlan, result: JobResult) -> None:
    """error.txt, processed_mini_batches.csv, job_result.txt, the report, the last overview."""
    from .report import write_job_report  # the report's code only where a job ends
    events = gather_errors(location)
    groups = write_error_summary(location, events)
    write_processed_mini_batches(location)
    pointer = _error_pointer(events, groups)
    write_job_result(location, result, pointer)
    write_job_report(location, errors=events)
    write_overview(location, job_plan, result.totals,
                   result="SUCCESS" if result.success else "FAILED", reason=result.reason,
                   errors=[pointer] if pointer else None)


def _error_pointer(events: list[str], groups: list[Any]) -> str | None:
    if not events:
        return None
    return (f"{len(events)} errors in {len(groups)} groups; most frequent: "
            f"{groups[0].count} x {groups[0].signature}, first in {groups[0].first_where}")


def _sys_node_logs(location: OutputLocation) -> list[str]:
    return [f"{SYS_NODE_DIR}/{ip}/{name}" for ip in location.listdir(SYS_NODE_DIR)
            for name in location.listdir(f"{SYS_NODE_DIR}/{ip}") if name.endswith(".txt")]


def write_processed_mini_batches(location: OutputLocation) -> None:
    """One CSV row per mini-batch try, from every process's line in logs/sys/node/."""
    rows = []
    for rel in _sys_node_logs(location):
        process = rel.rsplit("/", 1)[-1][:-4]
        for text in location.iter_lines(rel):
            fields = dict(part.split("=", 1) for part in text.split()[1:] if "=" in part)
            if "mini_batch" not in fields:
                continue
            rows.append([fields.get("node", ""), fields.get("ip", ""), process, fields.get("pid", ""),
                         fields["mini_batch"], fields.get("try", ""), fields.get("status", ""),
                         fields.get("total", ""), fields.get("succeeded", ""),
                         fields.get("failed", ""), fields.get("start", ""),
                         fields.get("duration", ""), fields.get("run_time", "")])
    rows.sort(key=lambda r: (int(r[4]), int(r[5] or 0), r[10]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PROCESSED_COLUMNS)
    writer.writerows(rows)
    location.write_atomic(PROCESSED_MINI_BATCHES, buffer.getvalue().encode())


def gather_errors(location: OutputLocation) -> list[str]:
    """Every error event of every process, oldest first, each pointing at its full log."""
    events = []
    for ip in location.listdir(ERROR_DIR):
        for name in location.listdir(f"{ERROR_DIR}/{ip}"):
            rel = f"{ERROR_DIR}/{ip}/{name}"
            for text in location.iter_lines(rel):
                if text.startswith(logs.ERROR_EVENT):
                    events.append(f"{text[len(logs.ERROR_EVENT):].rstrip()} (details: {rel})")
    events.sort()
    return events


def _first_item(location: OutputLocation, where: str) -> str | None:
    match = re.search(r"mini-batch (\d+)", where)
    if not match:
        return None
    index = int(match.group(1))
    batch = next(iter_plan(location, range(index, index + 1)), None)
    return batch.items[0] if batch is not None and batch.items else None


def write_error_summary(location: OutputLocation, events: list[str]) -> list[Any]:
    """logs/user/error.txt: identical errors grouped, then every error oldest first."""
    from .report import group_errors

    groups = group_errors(events)
    if not events:
        location.write_atomic(logs.USER_ERROR_SUMMARY, b"no errors\n")
        return groups
    lines = [f"{len(events)} errors in {len(groups)} groups, most frequent first:"]
    for group in groups:
        item = _first_item(location, group.first_where)
        lines.append(group.describe() + (f"; first item: {item}" if item else ""))
    lines += ["", "every error, oldest first:", *events]
    location.write_atomic(logs.USER_ERROR_SUMMARY, ("\n".join(lines) + "\n").encode())
    return groups


def write_job_result(location: OutputLocation, result: JobResult, error_pointer: str | None) -> None:
    t = result.totals
    lines = [
        "SUCCESS" if result.success else "FAILED",
        f"reason: {result.reason}" if result.reason else "reason: none",
        f"mini-batches: {result.mini_batch_count} planned, {t.mini_batches_done} done, "
        f"{t.failed_mini_batches} failed, {result.missing_mini_batches} without a result",
        f"items: {logs.count(result.item_count)} planned, {t.succeeded_items} succeeded, {t.failed_items} failed",
        f"output: {result.output_file or 'none'}",
        f"elapsed: {result.elapsed_seconds:.1f} s",
    ]
    if error_pointer:
        lines.append(f"see {logs.USER_ERROR_SUMMARY}: {error_pointer}")
    lines.append(f"report: {logs.JOB_REPORT}")
    location.write_atomic(logs.JOB_RESULT, ("\n".join(lines) + "\n").encode())
    location.append_text(logs.MASTER_ROLE, logs.line(f"job result: {lines[0]}; " + "; ".join(lines[1:])))
