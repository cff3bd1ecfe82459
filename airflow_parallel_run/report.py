"""logs/job_report.html: one page that shows how a job went, built from its logs alone.

Reads what the job left in its output location and writes one self-contained HTML file (inline
CSS, SVG charts drawn here; no script, nothing fetched: its Content-Security-Policy forbids
it)::

    logs/job_result.txt                              -> summary
    logs/sys/job_report/processed_mini_batches.csv   -> progress per node, slowest mini-batches
    logs/user/error.txt                              -> errors, grouped by shape
    logs/perf/<ip>/*.csv (monitor.py)                -> cpu and memory over time, per process

A missing input leaves its section with a one-line note: the page can be built for a job
that is still running, failed early, or ran without the resource monitor.
"""

from __future__ import annotations

import csv
import heapq
import html
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from . import logs
from .monitor import DISK_USAGE, NODE_USAGE, PROCESSES_USAGE, perf_rel
from .storage import OutputLocation

REPORT = logs.JOB_REPORT
PROCESSED_MINI_BATCHES = logs.PROCESSED_MINI_BATCHES
PERF_DIR = "logs/perf"
SLOWEST = 10
MAX_POINTS = 800  # per chart line: enough for the eye, keeps the page small for long jobs
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")


# -- errors ---------------------------------------------------------------------------------------

@dataclass
class ErrorGroup:
    """Errors of one shape: same exception type, same message once values are taken out."""

    signature: str  # the message with numbers, quoted strings and paths replaced
    count: int
    first_time: str
    first_where: str  # "mini-batch 3 try 1 (process002 pid 4711)", or "init (...)"
    example: str  # the first error's message as it was
    details: str  # the file with the first one's full traceback

    def describe(self) -> str:
        """One line for logs/user/error.txt."""
        text = f"{self.count} x {self.signature}"
        if self.first_time:
            text += f" -- first {self.first_time} in {self.first_where}: {self.example}"
        if self.details:
            text += f"; traceback in {self.details}"
        return text


_EVENT = re.compile(r"^(?P<time>\S+) (?P<process>\S+) pid (?P<pid>\S+) (?P<what>.+?): "
                    r"(?P<error>.*?)(?: \(details: (?P<details>[^()]*)\))?$")
_SHAPES = (  # order matters: a path may hold numbers, a quoted string may hold a path
    (re.compile(r"""(?<!\w)'[^'\n]*'(?!\w)|(?<!\w)"[^"\n]*"(?!\w)"""), "<str>"),
    (re.compile(r"\b[A-Za-z][\w+.-]*://[^\s'\"()]+"), "<url>"),
    # /abs/path, ./rel, a/b/c, dir/file.ext; not "and/or", not "</b>"
    (re.compile(r"(?:(?<=[\s=(\[:,'\"])|^)"
                r"(?:(?:~|\.{1,2})?/[\w.~-]+(?:/[\w.~-]+)*"
                r"|[\w.~-]+(?:/[\w.~-]+){2,}"
                r"|[\w.~-]+/[\w~-]+\.\w+)/?"), "<path>"),
    (re.compile(r"\b0x[0-9A-Fa-f]+\b"), "<hex>"),
    (re.compile(r"\b\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b"), "<n>"),
)


def error_shape(message: str) -> str:
    """``ValueError: bad row 17 in '/data/a.csv'`` -> ``ValueError: bad row <n> in <str>``."""
    for pattern, placeholder in _SHAPES:
        message = pattern.sub(placeholder, message)
    return message


def group_errors(lines: Iterable[str]) -> list[ErrorGroup]:
    """Group lines of logs/user/error.txt by :func:`error_shape`; most frequent first.

    A line is ``<time> <process> pid <pid> <what>: <error> (details: <path>)``; a line of
    another shape is grouped on its whole text.
    """
    groups: dict[str, ErrorGroup] = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        match = _EVENT.match(line)
        if match:
            time, error, details = match["time"], match["error"], match["details"] or ""
            where = f"{match['what']} ({match['process']} pid {match['pid']})"
        else:
            time, error, details, where = "", line, "", ""
        signature = error_shape(error)
        group = groups.get(signature)
        if group is None:
            groups[signature] = ErrorGroup(signature, 1, time, where, error, details)
            continue
        group.count += 1
        if time and (not group.first_time or time < group.first_time):
            group.first_time, group.first_where = time, where
            group.example, group.details = error, details
    return sorted(groups.values(), key=lambda g: (-g.count, g.first_time or "~"))


# -- what the report reads ------------------------------------------------------------------------

@dataclass
class _JobResult:
    status: str
    reason: str
    counts: dict[str, list[tuple[str, int]]]  # "mini-batches" -> [("planned", 10), ...]
    other: list[tuple[str, str]]  # output, elapsed, see ...


@dataclass
class _Try:
    """One row of processed_mini_batches.csv."""

    node: str
    ip: str
    process: str
    pid: str
    mini_batch: int
    try_number: int
    status: str
    total: int
    start: float | None  # epoch seconds
    duration: float
    run_time: float

    @property
    def where(self) -> str:
        return f"node {self.node} ({self.ip})" if self.node else self.ip or "?"


def _read_text(location: OutputLocation, rel: str) -> str | None:
    data = location.read_bytes(rel)
    return None if data is None else data.decode("utf-8", "replace")


def _read_csv(location: OutputLocation, rel: str) -> list[dict[str, str]] | None:
    text = _read_text(location, rel)
    return None if text is None else list(csv.DictReader(io.StringIO(text)))


def _epoch(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _number(text: str | None, default: float = 0.0) -> float:
    try:
        return float(text) if text not in (None, "") else default
    except ValueError:
        return default


def _parse_job_result(text: str) -> _JobResult:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    status = lines[0] if lines else "?"
    reason, counts, other = "", {}, []
    for line in lines[1:]:
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "reason":
            reason = value
        elif key in ("mini-batches", "items"):
            counts[key] = [(m[2].strip(), int(m[1]))
                           for m in re.finditer(r"(\d+) ([^,]+)", value)]
        else:
            other.append((key, value))
    return _JobResult(status, reason, counts, other)


def _parse_tries(rows: list[dict[str, str]]) -> list[_Try]:
    tries = []
    for row in rows:
        try:
            tries.append(_Try(
                row.get("node", ""), row.get("ip", ""), row.get("process", ""), row.get("pid", ""),
                int(row["mini_batch"]), int(_number(row.get("try"), 1)), row.get("status", ""),
                int(_number(row.get("total"))), _epoch(row.get("start", "")),
                _number(row.get("duration_s")), _number(row.get("run_time_s"))))
        except (KeyError, ValueError):
            continue  # a row cut short: the rest of the report still stands
    return tries


def _finished(tries: list[_Try]) -> list[_Try]:
    """Each mini-batch's deciding try: the one that succeeded, else its last one.

    A last try that was stopped (the job ended early) did not finish its mini-batch.
    """
    deciding: dict[int, _Try] = {}
    for t in tries:
        best = deciding.get(t.mini_batch)
        if best is None or (best.status != "ok"
                            and (t.status == "ok" or t.try_number > best.try_number)):
            deciding[t.mini_batch] = t
    return [t for t in deciding.values() if t.status != "stopped" and t.start is not None]


# -- html pieces ----------------------------------------------------------------------------------

def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _table(table_id: str, headers: list[str], rows: list[list[object]],
           numeric: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _log_link(rel: str) -> str:
    """A link to another log, relative to logs/ where the report is (works on a copy too)."""
    href = rel[len("logs/"):] if rel.startswith("logs/") else f"../{rel}"
    return f'<a href="{_e(href)}">{_e(rel)}</a>'


@dataclass
class _Series:
    label: str
    points: list[tuple[float, float]]  # (epoch seconds, value), in time order


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    kept = [points[int(i * step)] for i in range(MAX_POINTS)]
    return kept + [points[-1]]


def _nice_ticks(top: float, count: int = 5) -> list[float]:
    """0, then round steps (1, 2, 2.5 or 5 times a power of ten) up to ``top`` or just past it."""
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks, value = [], 0.0
    while value <= top + 1e-9:
        ticks.append(value)
        value += step
    return ticks


def _line_chart(chart_id: str, title: str, series: list[_Series], y_label: str,
                y_max: float | None = None, step: bool = False) -> str:
    """An inline SVG line chart over time; one ``polyline.series`` per series."""
    width, height = 880, 300
    left, right, top, bottom = 60, 20, 20, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    all_points = [p for s in series for p in s.points]
    t0 = min(p[0] for p in all_points)
    t1 = max(p[0] for p in all_points)
    span = max(t1 - t0, 1.0)
    top_value = y_max if y_max is not None else max(max(p[1] for p in all_points), 1.0) * 1.05
    ticks = _nice_ticks(top_value)
    top_value = max(top_value, ticks[-1])

    def x(t: float) -> float:
        return left + (t - t0) / span * plot_w

    def y(v: float) -> float:
        return top + plot_h - v / top_value * plot_h

    parts = [f'<svg id="{_e(chart_id)}" class="chart" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{_e(title)}">',
             f'<rect class="plot" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/>']
    for value in ticks:
        level = y(value)
        parts.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{level:.1f}" '
                     f'y2="{level:.1f}"/><text class="tick" x="{left - 6}" y="{level + 4:.1f}" '
                     f'text-anchor="end">{_e(f"{value:g}")}</text>')
    time_format = "%H:%M:%S" if span < 86400 else "%m-%d %H:%M"
    for i in range(6):
        t = t0 + span * i / 5
        label = datetime.fromtimestamp(t, UTC).strftime(time_format)
        anchor = "end" if i == 5 else "middle"  # the last label would run off the picture
        parts.append(f'<text class="tick" x="{x(t):.1f}" y="{top + plot_h + 16}" '
                     f'text-anchor="{anchor}">{_e(label)}</text>')
    parts.append(f'<text class="axis" x="{left + plot_w / 2}" y="{height - 6}" '
                 f'text-anchor="middle">time (UTC)</text>')
    parts.append(f'<text class="axis" x="14" y="{top + plot_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + plot_h / 2})">{_e(y_label)}</text>')
    for index, s in enumerate(series):
        points = _thin(s.points)
        coords = []
        for i, (t, v) in enumerate(points):
            if step and i:
                coords.append(f"{x(t):.1f},{y(points[i - 1][1]):.1f}")
            coords.append(f"{x(t):.1f},{y(v):.1f}")
        last = s.points[-1][1] if s.points else 0
        parts.append(f'<polyline class="series" id="{_e(chart_id)}-series-{index}" '
                     f'data-label="{_e(s.label)}" data-last="{_e(f"{last:g}")}" '
                     f'stroke="{COLORS[index % len(COLORS)]}" points="{" ".join(coords)}">'
                     f'<title>{_e(s.label)}</title></polyline>')
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{COLORS[i % len(COLORS)]}"></span>'
        f'{_e(s.label)}: {_e(f"{s.points[-1][1]:g}" if s.points else "-")}</li>'
        for i, s in enumerate(series))
    return (f'<figure><figcaption>{_e(title)}</figcaption>{"".join(parts)}'
            f'<ul class="legend" id="{_e(chart_id)}-legend">{legend}</ul></figure>')


# -- sections -------------------------------------------------------------------------------------

def _summary_section(location: OutputLocation, tries: list[_Try] | None) -> str:
    text = _read_text(location, logs.JOB_RESULT)
    parts = ["<h2>Summary</h2>"]
    if text is None:
        parts.append(_note(f"{logs.JOB_RESULT} is not there: the job is still running, or its "
                           "reducer did not run."))
    else:
        result = _parse_job_result(text)
        css = {"SUCCESS": "success", "FAILED": "failed"}.get(result.status, "unknown")
        parts.append(f'<p class="status {css}" id="job-status">{_e(result.status)}</p>')
        parts.append(f'<p id="job-reason">reason: {_e(result.reason or "none")}</p>')
        cards = []
        for group, counts in result.counts.items():
            for label, value in counts:
                value_id = _slug(f"{group}-{label}")
                cards.append(f'<div class="card"><span class="value" id="{_e(value_id)}">{value}'
                             f'</span><span class="label">{_e(group)} {_e(label)}</span></div>')
        parts.append(f'<div class="cards">{"".join(cards)}</div>')
        if result.other:
            parts.append("<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>"
                                          for k, v in result.other) + "</dl>")
    if tries:
        statuses: dict[str, int] = {}
        for t in tries:
            statuses[t.status] = statuses.get(t.status, 0) + 1
        items = "".join(f'<li>{_e(status)}: '
                        f'<span id="{_e(_slug(f"tries-{status}"))}">{count}</span></li>'
                        for status, count in sorted(statuses.items()))
        parts.append(f'<p>{len(tries)} tries of mini-batches, by how they ended:</p>'
                     f'<ul class="tries">{items}</ul>')
    logs_present = [rel for rel in (logs.JOB_RESULT, logs.USER_ERROR_SUMMARY, logs.MASTER_ROLE,
                                    logs.JOB_PROGRESS, PROCESSED_MINI_BATCHES)
                    if location.exists(rel)]
    if logs_present:
        parts.append("<p>Logs: " + ", ".join(_log_link(rel) for rel in logs_present) + "</p>")
    return "\n".join(parts)


def _progress_section(tries: list[_Try] | None) -> str:
    parts = ["<h2>Progress</h2>"]
    finished = _finished(tries or [])
    if not finished:
        parts.append(_note(f"no finished mini-batch in {PROCESSED_MINI_BATCHES}."))
        return "\n".join(parts)
    began = min(t.start for t in tries or [] if t.start is not None)
    by_node: dict[str, list[float]] = {}
    for t in finished:
        by_node.setdefault(t.where, []).append(t.start + t.duration)
    series = []
    for label, ends in sorted(by_node.items()):
        ends.sort()
        series.append(_Series(label, [(began, 0.0)] + [(end, float(i + 1))
                                                        for i, end in enumerate(ends)]))
    parts.append(_line_chart("chart-progress", "Mini-batches finished over time, per node "
                             "(succeeded, or failed on their last try)", series,
                             "mini-batches", step=True))
    return "\n".join(parts)


def _slowest_section(tries: list[_Try] | None) -> str:
    parts = ["<h2>Slowest mini-batches</h2>"]
    if not tries:
        parts.append(_note(f"{PROCESSED_MINI_BATCHES} is missing or empty."))
        return "\n".join(parts)
    slowest = heapq.nlargest(SLOWEST, tries, key=lambda t: t.duration)
    rows = [[t.mini_batch, t.try_number, t.status, f"{t.duration:.3f}", f"{t.run_time:.3f}",
             t.total, t.process, t.pid, t.where,
             logs.timestamp(t.start) if t.start is not None else ""] for t in slowest]
    parts.append(_table("slowest", ["mini-batch", "try", "status", "duration s", "run() s",
                                    "items", "process", "pid", "node", "start"],
                        rows, numeric=frozenset({0, 1, 3, 4, 5})))
    return "\n".join(parts)


def _errors_section(lines: list[str] | None) -> str:
    parts = ["<h2>Errors</h2>"]
    groups = group_errors(lines or [])
    if not groups:
        parts.append(_note(f"no errors recorded in {logs.USER_ERROR_SUMMARY}."))
        return "\n".join(parts)
    total = sum(g.count for g in groups)
    parts.append(f'<p><span id="error-count">{total}</span> errors of '
                 f'<span id="error-group-count">{len(groups)}</span> kinds; every traceback is '
                 f"in logs/user/error/.</p>")
    head = "".join(f"<th>{h}</th>" for h in ("count", "error", "first", "where", "example",
                                              "traceback"))
    body = "".join(
        f'<tr class="error-group"><td class="num">{g.count}</td>'
        f"<td><code>{_e(g.signature)}</code></td><td>{_e(g.first_time)}</td>"
        f"<td>{_e(g.first_where)}</td><td>{_e(g.example)}</td>"
        f"<td>{_log_link(g.details) if g.details else ''}</td></tr>"
        for g in groups)
    parts.append(f'<table id="errors"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    return "\n".join(parts)


def _resources_section(location: OutputLocation) -> str:
    parts = ["<h2>Resources</h2>"]
    cpu, memory, process_rows, disk_rows = [], [], [], []
    for ip in sorted(location.listdir(PERF_DIR)):
        node_rows = _read_csv(location, perf_rel(ip, NODE_USAGE)) or []
        times = [(_epoch(r.get("time", "")), r) for r in node_rows]
        times = [(t, r) for t, r in times if t is not None]
        if times:
            cpu.append(_Series(ip, [(t, _number(r.get("cpu_percent"))) for t, r in times]))
            memory.append(_Series(ip, [(t, _number(r.get("memory_percent"))) for t, r in times]))
        samples = _read_csv(location, perf_rel(ip, PROCESSES_USAGE)) or []
        process_rows += _process_summary(ip, samples)
        last_disk: dict[str, dict[str, str]] = {}
        for row in _read_csv(location, perf_rel(ip, DISK_USAGE)) or []:
            last_disk[row.get("mount", "?")] = row
        disk_rows += [[ip, mount, r.get("total_gb", ""), r.get("used_gb", ""), r.get("free_gb", ""),
                       r.get("percent", "")] for mount, r in sorted(last_disk.items())]
    if not (cpu or process_rows or disk_rows):
        parts.append(_note(f"no resource files under {PERF_DIR}/ (resource_monitor_interval 0, "
                           "or the job ran before the monitor started)."))
        return "\n".join(parts)
    if cpu:
        parts.append(_line_chart("chart-cpu", "CPU use per node (% of all cores)", cpu, "cpu %",
                                 y_max=100.0))
        parts.append(_line_chart("chart-memory", "Memory use per node (% of RAM)", memory,
                                 "memory %", y_max=100.0))
    if process_rows:
        parts.append("<h3>Worker processes</h3>")
        parts.append(_table("process-usage", ["node", "process", "pids", "samples", "mean cpu %",
                                              "max cpu %", "peak rss MB", "max threads",
                                              "max children"],
                            process_rows, numeric=frozenset({2, 3, 4, 5, 6, 7, 8})))
    if disk_rows:
        parts.append("<h3>Disks (last sample)</h3>")
        parts.append(_table("disk-usage", ["node", "mount", "total GB", "used GB", "free GB",
                                           "used %"], disk_rows, numeric=frozenset({2, 3, 4, 5})))
    return "\n".join(parts)


def _process_summary(ip: str, rows: list[dict[str, str]]) -> list[list[object]]:
    by_process: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_process.setdefault(row.get("process", "?"), []).append(row)
    summary = []
    for name, samples in sorted(by_process.items()):
        cpus = [_number(r.get("cpu_percent")) for r in samples]
        summary.append([
            ip, name, len({r.get("pid") for r in samples}), len(samples),
            f"{sum(cpus) / len(cpus):.1f}", f"{max(cpus):.1f}",
            f"{max(_number(r.get('rss_mb')) for r in samples):.1f}",
            int(max(_number(r.get("threads")) for r in samples)),
            int(max(_number(r.get("children")) for r in samples)),
        ])
    return summary


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}
h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.meta,.note{color:#666}.status{font-size:1.4em;font-weight:bold;margin:8px 0}
.success{color:#2a7d2a}.failed{color:#c0392b}.unknown{color:#666}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:110px}
.card .value{display:block;font-size:1.4em;font-weight:bold}.card .label{color:#666;font-size:.85em}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{color:#666}dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:8px 0}
th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.95em;word-break:break-word}#errors code{display:block;min-width:16em}
figure{margin:12px 0}figcaption{font-weight:bold;margin-bottom:4px}
svg.chart{max-width:100%;height:auto;font-size:11px}
svg .plot{fill:#fafafa;stroke:#ccc}svg .grid{stroke:#e5e5e5}svg .tick{fill:#666}
svg .axis{fill:#444}svg .series{fill:none;stroke-width:2}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px;margin:4px 0}
.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
"""


def render_report(location: OutputLocation, errors: list[str] | None = None) -> str:
    """The page's HTML; ``errors`` are error event lines (by default: logs/user/error.txt)."""
    if errors is None:
        text = _read_text(location, logs.USER_ERROR_SUMMARY)
        errors = text.splitlines() if text is not None else None
    rows = _read_csv(location, PROCESSED_MINI_BATCHES)
    tries = _parse_tries(rows) if rows is not None else None
    body = "\n".join([
        "<h1>Job report</h1>",
        f'<p class="meta">{_e(location.display())} &middot; built {_e(logs.timestamp())}</p>',
        _summary_section(location, tries),
        _progress_section(tries),
        _slowest_section(tries),
        _errors_section(errors),
        _resources_section(location),
    ])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Job report</title><style>{_STYLE}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def write_job_report(location: OutputLocation, errors: list[str] | None = None) -> str:
    """Write logs/job_report.html from the logs in ``location``; returns where it is."""
    location.write_atomic(REPORT, render_report(location, errors).encode("utf-8"))
    return location.display(REPORT)
