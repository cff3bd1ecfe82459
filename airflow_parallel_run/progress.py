"""logs/job_progress_overview.txt: where the job stands, rewritten while it runs and at the end.

Nodes rewrite it every OVERVIEW_INTERVAL seconds from the job-wide counts they share (so it is
right whichever node wrote it last); the reducer writes the final version with the result.
"""

from __future__ import annotations

import time

from . import logs
from .plan import JobPlan
from .storage import OutputLocation
from .thresholds import Totals

OVERVIEW_INTERVAL = 10.0


def overview_text(job_plan: JobPlan, totals: Totals, *, result: str | None = None,
                  reason: str | None = None, errors: list[str] | None = None,
                  now: float | None = None) -> str:
    now = time.time() if now is None else now
    elapsed = max(now - job_plan.started, 1e-9)
    count = job_plan.mini_batch_count
    done = totals.mini_batches_done
    percent = 100.0 * done / count if count else 100.0
    rate = done / elapsed
    items_rate = (totals.succeeded_items + totals.failed_items) / elapsed
    lines = [
        f"job progress overview, updated {logs.timestamp(now)}",
        f"status: {result or 'RUNNING'}",
        f"mini-batches: {count} scheduled, {done} done ({percent:.1f}%), "
        f"{totals.failed_mini_batches} failed",
        f"items: {logs.count(job_plan.item_count)} scheduled, {totals.succeeded_items} succeeded, "
        f"{totals.failed_items} failed",
        f"rate: {rate:.2f} mini-batches/s, {items_rate:.1f} items/s",
    ]
    if result is None:
        left = (count - done) / rate if rate > 0 else None
        lines.append(f"elapsed: {elapsed:.0f} s, estimated time left: "
                     + (f"{left:.0f} s" if left is not None else "unknown"))
    else:
        lines.append(f"elapsed: {elapsed:.1f} s")
        if reason:
            lines.append(f"reason: {reason}")
        if errors:
            lines.append(f"see {logs.USER_ERROR_SUMMARY}: {errors[0]}")
        lines.append(f"report: {logs.JOB_REPORT}")
    return "\n".join(lines) + "\n"


def write_overview(location: OutputLocation, job_plan: JobPlan, totals: Totals, **final: object) -> None:
    location.write_atomic(logs.JOB_PROGRESS, logs.encoded(overview_text(job_plan, totals, **final)))  # type: ignore[arg-type]
