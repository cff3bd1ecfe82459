"""logs/job_report.html: one page that shows how a job went, from its result and events.

Renders one self-contained HTML file (inline CSS, SVG charts drawn here; no script, nothing
fetched: its Content-Security-Policy forbids it) from what the job left in its output
location, or from what the reducer hands over::

    reduce.JobResult (logs/job_result.json)          -> summary
    events.TryEvent (.parallel_run/events/)          -> progress per node, slowest mini-batches
    events.ErrorEvent (.parallel_run/events/)        -> errors, grouped by shape
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
from .events import ErrorEvent, JobEvents, TryEvent, read_events
from .monitor import DISK_USAGE, NODE_USAGE, PROCESSES_USAGE, perf_rel
from .reduce import JobResult
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
    first: ErrorEvent  # the earliest of them

    @property
    def first_time(self) -> str:
        return logs.timestamp(self.first.time)

    @property
    def first_where(self) -> str:
        """``mini-batch 3 try 1 (process002 pid 4711)``, or ``init (...)``."""
        return self.first.where

    @property
    def example(self) -> str:
        """The first error's message as it was."""
        return self.first.error

    @property
    def details(self) -> str:
        """The log with the first one's full traceback."""
        return self.first.human_log

    def describe(self) -> str:
        """One line for logs/user/error.txt."""
        return (f"{self.count} x {self.signature} -- first {self.first_time} in "
                f"{self.first_where}: {self.example}; traceback in {self.details}")


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


def group_errors(errors: Iterable[ErrorEvent]) -> list[ErrorGroup]:
    """Group error events by :func:`error_shape`; most frequent first."""
    groups: dict[str, ErrorGroup] = {}
    for event in errors:
        signature = error_shape(event.error)
        group = groups.get(signature)
        if group is None:
            groups[signature] = ErrorGroup(signature, 1, event)
            continue
        group.count += 1
        if event.time < group.first.time:
            group.first = event
    return sorted(groups.values(), key=lambda g: (-g.count, g.first.time))


# -- what the report reads ------------------------------------------------------------------------

def _read_csv(location: OutputLocation, rel: str) -> list[dict[str, str]] | None:
    data = location.read_bytes(rel)
    if data is None:
        return None
    return list(csv.DictReader(io.StringIO(data.decode("utf-8", "replace"))))


def _read_result(location: OutputLocation) -> JobResult | None:
    data = location.read_json(logs.JOB_RESULT_JSON)
    return None if data is None else JobResult.from_dict(data)


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


def _where(t: TryEvent) -> str:
    return f"node {t.node_number} ({t.ip})"


def _finished(tries: list[TryEvent]) -> list[TryEvent]:
    """Each mini-batch's deciding try: the one that succeeded, else its last one.

    A last try that was stopped (the job ended early) did not finish its mini-batch.
    """
    deciding: dict[int, TryEvent] = {}
    for t in tries:
        best = deciding.get(t.mini_batch)
        if best is None or (best.status != "ok"
                            and (t.status == "ok" or t.try_number > best.try_number)):
            deciding[t.mini_batch] = t
    return [t for t in deciding.values() if t.status != "stopped"]


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


@dataclass
class _Frame:
    """Where a chart's plot area is, and the time and value ranges it spans."""

    t0: float
    span: float  # seconds
    top_value: float
    width: int = 880
    height: int = 300
    left: int = 60  # room for the values
    top: int = 20

    @property
    def plot_w(self) -> int:
        return self.width - self.left - 20

    @property
    def plot_h(self) -> int:
        return self.height - self.top - 44  # room for the times and the axis title

    def x(self, t: float) -> float:
        return self.left + (t - self.t0) / self.span * self.plot_w

    def y(self, v: float) -> float:
        return self.top + self.plot_h - v / self.top_value * self.plot_h


def _axes(frame: _Frame, ticks: list[float], y_label: str) -> list[str]:
    """Grid lines with their values, six time labels, the axis titles."""
    left, top, plot_w, plot_h = frame.left, frame.top, frame.plot_w, frame.plot_h
    parts = []
    for value in ticks:
        level = frame.y(value)
        parts.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{level:.1f}" '
                     f'y2="{level:.1f}"/><text class="tick" x="{left - 6}" y="{level + 4:.1f}" '
                     f'text-anchor="end">{_e(f"{value:g}")}</text>')
    time_format = "%H:%M:%S" if frame.span < 86400 else "%m-%d %H:%M"
    for i in range(6):
        t = frame.t0 + frame.span * i / 5
        label = datetime.fromtimestamp(t, UTC).strftime(time_format)
        anchor = "end" if i == 5 else "middle"  # the last label would run off the picture
        parts.append(f'<text class="tick" x="{frame.x(t):.1f}" y="{top + plot_h + 16}" '
                     f'text-anchor="{anchor}">{_e(label)}</text>')
    parts.append(f'<text class="axis" x="{left + plot_w / 2}" y="{frame.height - 6}" '
                 f'text-anchor="middle">time (UTC)</text>')
    parts.append(f'<text class="axis" x="14" y="{top + plot_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + plot_h / 2})">{_e(y_label)}</text>')
    return parts


def _polyline(frame: _Frame, chart_id: str, index: int, s: _Series, step: bool) -> str:
    """One series; ``step``: the value holds until the next point (a count that jumps)."""
    points = _thin(s.points)
    coords = []
    for i, (t, v) in enumerate(points):
        if step and i:
            coords.append(f"{frame.x(t):.1f},{frame.y(points[i - 1][1]):.1f}")
        coords.append(f"{frame.x(t):.1f},{frame.y(v):.1f}")
    last = s.points[-1][1] if s.points else 0
    return (f'<polyline class="series" id="{_e(chart_id)}-series-{index}" '
            f'data-label="{_e(s.label)}" data-last="{_e(f"{last:g}")}" '
            f'stroke="{COLORS[index % len(COLORS)]}" points="{" ".join(coords)}">'
            f'<title>{_e(s.label)}</title></polyline>')


def _line_chart(chart_id: str, title: str, series: list[_Series], y_label: str,
                y_max: float | None = None, step: bool = False) -> str:
    """An inline SVG line chart over time; one ``polyline.series`` per series."""
    all_points = [p for s in series for p in s.points]
    t0 = min(p[0] for p in all_points)
    span = max(max(p[0] for p in all_points) - t0, 1.0)
    top_value = y_max if y_max is not None else max(max(p[1] for p in all_points), 1.0) * 1.05
    ticks = _nice_ticks(top_value)
    frame = _Frame(t0, span, max(top_value, ticks[-1]))
    parts = [f'<svg id="{_e(chart_id)}" class="chart" viewBox="0 0 {frame.width} {frame.height}" '
             f'width="{frame.width}" height="{frame.height}" role="img" aria-label="{_e(title)}">',
             f'<rect class="plot" x="{frame.left}" y="{frame.top}" width="{frame.plot_w}" '
             f'height="{frame.plot_h}"/>',
             *_axes(frame, ticks, y_label),
             *(_polyline(frame, chart_id, i, s, step) for i, s in enumerate(series)),
             "</svg>"]
    legend = "".join(
        f'<li><span class="swatch" style="background:{COLORS[i % len(COLORS)]}"></span>'
        f'{_e(s.label)}: {_e(f"{s.points[-1][1]:g}" if s.points else "-")}</li>'
        for i, s in enumerate(series))
    return (f'<figure><figcaption>{_e(title)}</figcaption>{"".join(parts)}'
            f'<ul class="legend" id="{_e(chart_id)}-legend">{legend}</ul></figure>')


# -- sections -------------------------------------------------------------------------------------

def _result_parts(result: JobResult) -> list[str]:
    """Status, reason, a card per count, and the rest as a list of terms."""
    css = "success" if result.success else "failed"
    parts = [f'<p class="status {css}" id="job-status">{_e(result.status)}</p>',
             f'<p id="job-reason">reason: {_e(result.reason or "none")}</p>']
    cards = []
    for group, counts in result.counts().items():
        for label, value in counts:
            if value is None:  # rows of a table are only known once read
                continue
            value_id = _slug(f"{group}-{label}")
            cards.append(f'<div class="card"><span class="value" id="{_e(value_id)}">{value}'
                         f'</span><span class="label">{_e(group)} {_e(label)}</span></div>')
    parts.append(f'<div class="cards">{"".join(cards)}</div>')
    other = [("output", result.output_file or "none"),
             ("elapsed", result.elapsed())]
    if result.resumed:
        other.append(("resumed", "an earlier run of the same job"))
    other += [("note", note) for note in result.notes]
    parts.append("<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in other)
                 + "</dl>")
    return parts


def _tries_part(tries: list[TryEvent]) -> str:
    statuses: dict[str, int] = {}
    for t in tries:
        statuses[t.status] = statuses.get(t.status, 0) + 1
    items = "".join(f'<li>{_e(status)}: '
                    f'<span id="{_e(_slug(f"tries-{status}"))}">{count}</span></li>'
                    for status, count in sorted(statuses.items()))
    recovered = sum(1 for t in tries if t.recovered)
    note = (f' (<span id="tries-recovered">{recovered}</span> recovered from their records: '
            'their node was killed before it logged them)' if recovered else '')
    return (f'<p>{len(tries)} tries of mini-batches, by how they ended{note}:</p>'
            f'<ul class="tries">{items}</ul>')


def _summary_section(location: OutputLocation, result: JobResult | None,
                     tries: list[TryEvent]) -> str:
    parts = ["<h2>Summary</h2>"]
    if result is None:
        parts.append(_note(f"{logs.JOB_RESULT} is not there: the job is still running, or its "
                           "reducer did not run."))
    else:
        parts += _result_parts(result)
    if tries:
        parts.append(_tries_part(tries))
    logs_present = [rel for rel in (logs.JOB_RESULT, logs.USER_ERROR_SUMMARY, logs.MASTER_ROLE,
                                    logs.JOB_PROGRESS, PROCESSED_MINI_BATCHES)
                    if location.exists(rel)]
    if logs_present:
        parts.append("<p>Logs: " + ", ".join(_log_link(rel) for rel in logs_present) + "</p>")
    return "\n".join(parts)


def _progress_section(tries: list[TryEvent]) -> str:
    parts = ["<h2>Progress</h2>"]
    finished = _finished(tries)
    if not finished:
        parts.append(_note("no finished mini-batch among the tries the nodes recorded."))
        return "\n".join(parts)
    began = min(t.start for t in tries)
    by_node: dict[str, list[float]] = {}
    for t in finished:
        by_node.setdefault(_where(t), []).append(t.end)
    series = []
    for label, ends in sorted(by_node.items()):
        ends.sort()
        series.append(_Series(label, [(began, 0.0)] + [(end, float(i + 1))
                                                        for i, end in enumerate(ends)]))
    parts.append(_line_chart("chart-progress", "Mini-batches finished over time, per node "
                             "(succeeded, or failed on their last try)", series,
                             "mini-batches", step=True))
    return "\n".join(parts)


def _slowest_section(tries: list[TryEvent]) -> str:
    parts = ["<h2>Slowest mini-batches</h2>"]
    if not tries:
        parts.append(_note("no try of a mini-batch recorded."))
        return "\n".join(parts)
    timed = [t for t in tries if not t.recovered]  # a recovered try's duration is not known
    slowest = heapq.nlargest(SLOWEST, timed, key=lambda t: t.duration)
    rows: list[list[object]] = [
        [t.mini_batch, t.try_number, t.status, f"{t.duration:.3f}", f"{t.run_time:.3f}",
         t.total, t.process, t.pid or "-", _where(t), logs.timestamp(t.start)] for t in slowest]
    parts.append(_table("slowest", ["mini-batch", "try", "status", "duration s", "run() s",
                                    "items", "process", "pid", "node", "start"],
                        rows, numeric=frozenset({0, 1, 3, 4, 5})))
    return "\n".join(parts)


def _errors_section(errors: list[ErrorEvent]) -> str:
    parts = ["<h2>Errors</h2>"]
    groups = group_errors(errors)
    if not groups:
        parts.append(_note("no errors recorded."))
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
        f"<td>{_log_link(g.details)}</td></tr>"
        for g in groups)
    parts.append(f'<table id="errors"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    return "\n".join(parts)


def _usage_series(location: OutputLocation, ip: str) -> tuple[_Series, _Series] | None:
    """The node's cpu and memory use over time, when it has samples."""
    samples = []
    for row in _read_csv(location, perf_rel(ip, NODE_USAGE)) or []:
        t = _epoch(row.get("time", ""))
        if t is not None:
            samples.append((t, row))
    if not samples:
        return None
    return (_Series(ip, [(t, _number(r.get("cpu_percent"))) for t, r in samples]),
            _Series(ip, [(t, _number(r.get("memory_percent"))) for t, r in samples]))


def _disk_rows(location: OutputLocation, ip: str) -> list[list[object]]:
    """The last sample of each of the node's disks."""
    last: dict[str, dict[str, str]] = {}
    for row in _read_csv(location, perf_rel(ip, DISK_USAGE)) or []:
        last[row.get("mount", "?")] = row
    return [[ip, mount, r.get("total_gb", ""), r.get("used_gb", ""), r.get("free_gb", ""),
             r.get("percent", "")] for mount, r in sorted(last.items())]


def _resources_section(location: OutputLocation) -> str:
    parts = ["<h2>Resources</h2>"]
    cpu, memory = [], []
    process_rows: list[list[object]] = []
    disk_rows: list[list[object]] = []
    for ip in sorted(location.listdir(PERF_DIR)):
        usage = _usage_series(location, ip)
        if usage is not None:
            cpu.append(usage[0])
            memory.append(usage[1])
        process_rows += _process_summary(ip, _read_csv(location, perf_rel(ip, PROCESSES_USAGE)) or [])
        disk_rows += _disk_rows(location, ip)
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


def render_report(location: OutputLocation, result: JobResult | None = None,
                  events: JobEvents | None = None) -> str:
    """The page's HTML; what is not given is read from ``location``."""
    if result is None:
        result = _read_result(location)
    if events is None:
        events = read_events(location)
    body = "\n".join([
        "<h1>Job report</h1>",
        f'<p class="meta">{_e(location.display())} &middot; built {_e(logs.timestamp())}</p>',
        _summary_section(location, result, events.tries),
        _progress_section(events.tries),
        _slowest_section(events.tries),
        _errors_section(events.errors),
        _resources_section(location),
    ])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Job report</title><style>{_STYLE}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def write_job_report(location: OutputLocation, result: JobResult | None = None,
                     events: JobEvents | None = None) -> str:
    """Write logs/job_report.html (from ``location`` for what is not given); where it is."""
    location.write_atomic(REPORT, logs.encoded(render_report(location, result, events)))
    return location.display(REPORT)
