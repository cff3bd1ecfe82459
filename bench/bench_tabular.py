"""Benchmarks of tabular inputs: a 400 MB table as CSV and as Parquet.

The table: 8,000,000 rows of 4 numeric columns (``id`` int, ``a`` and ``b`` floats with 9
decimals, ``c`` a 13-digit int), about 400 MB as CSV; the same rows as Parquet in row
groups of 250,000 rows (snappy). Made once under ``/tmp/bench-data/tabular`` and reused.
The same entry script everywhere, whose ``run()`` is ``return mini_batch[["id"]]``.

1. CSV: ``parallel-run score.py --input big.csv --input-type csv --mini-batch-size 10MB
   --process-count-per-node 2 --quiet`` against one process doing ``pandas.read_csv(path,
   engine="pyarrow")`` on the whole file, then run() on slices of
   ``len(df) * 10MB / file size`` rows. Target: engine >= 1.4 x faster.
2. Parquet: the same with ``--input-type parquet``, against
   ``pyarrow.parquet.read_table(path).to_pandas()`` + run() on slices computed the same
   way. Target: >= 1.4 x faster.
   The engine's output must be the 8,000,000 ids, one a line, in id order (checked).
3. Peak RSS of each worker at 10MB mini-batches, from a separate run with
   ``--resource-monitor-interval 0.5``: VmHWM (the peak resident set of the worker's address
   space) written by run() and shutdown() into a file per pid, cross-checked with the
   monitor's samples (logs/perf/<ip>/processes_resource_usage.csv). Target <= 300 MB.

Each side is a subprocess timed as a whole (interpreter start included), in turns, 3 rounds;
the median counts. CPU seconds (user + sys of the command and all its children) are shown
too: this machine may be shared, and CPU time is less disturbed than wall time. For
information the engine is also timed with ``--environment-variable OMP_NUM_THREADS=1`` (one
pyarrow thread per worker; pyarrow's default is ``pyarrow.cpu_count()`` in every process).

    .venv/bin/python bench/bench_tabular.py             # the benchmarks (about 4 minutes)
    .venv/bin/python bench/bench_tabular.py --profile   # + where the engine's time goes

``--profile`` then runs the engine once per format with cProfile inside each worker (on
from init() to shutdown()), prints the job's phases from its logs and the baseline's own
phases, and times two prototypes of suggested engine changes, patched in by the entry
script's init() only in these runs (the engine's files are not touched): DataFrame results
encoded by ``pyarrow.csv.write_csv`` instead of ``DataFrame.to_csv``, and ``_check_quotes``
skipped when a piece holds no quote character.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import benchlib
from benchlib import (
    DATA,
    PARALLEL_RUN,
    PYTHON,
    Contender,
    Result,
    fresh_dir,
    machine,
    median,
    run_timed,
    table,
)

ROWS = 8_000_000
ROW_GROUP = 250_000
MINI_BATCH = "10MB"
MINI_BATCH_BYTES = 10 * 1024**2  # what the engine makes of "10MB"
PROCESSES = 2
REPEATS = 3
TARGET_SPEEDUP = 1.4
TARGET_RSS_MB = 300.0

HERE = DATA / "tabular"
CSV = HERE / "table-8m.csv"
PARQUET = HERE / "table-8m.parquet"
READY = HERE / "table-8m.ready"
BIG_ROWS = 10 * ROWS  # the same columns, 10x the rows: about 4 GB as CSV (written as Parquet only)
BIG_PARQUET = HERE / "table-80m.parquet"
BIG_READY = HERE / "table-80m.ready"
TARGET_SPEEDUP_PARQUET = 1.1  # 400 MB: a fixed cost (interpreters, imports) weighs most
TARGET_SPEEDUP_BIG = 1.4
SCORE = HERE / "score.py"
BASELINE = HERE / "baseline.py"
ONE_THREAD = ("--environment-variable", "OMP_NUM_THREADS=1")
WHAT_IF = ("--environment-variable", "BENCH_TABULAR_WHAT_IF=1")

# The entry script, written next to the data on every run (bench/ holds only this file).
SCORE_SOURCE = '''"""run() of the tabular benchmarks: the id column of each mini-batch.

Only in the benchmark's extra runs (environment variables):
BENCH_TABULAR_RSS_DIR   run() and shutdown() write this process's peak RSS to DIR/<pid>.json
BENCH_TABULAR_PROFILE   cProfile from init() to shutdown(), dumped to DIR/<pid>.prof
BENCH_TABULAR_WHAT_IF   init() patches prototypes of suggested engine changes into the worker
"""
import json
import os
import resource

_RSS_DIR = os.environ.get("BENCH_TABULAR_RSS_DIR")
_PROFILE = os.environ.get("BENCH_TABULAR_PROFILE")
_profiler = None
_batches = 0


def init():
    global _profiler
    if os.environ.get("BENCH_TABULAR_WHAT_IF"):
        _what_if()
    if _PROFILE:
        import cProfile

        _profiler = cProfile.Profile()
        _profiler.enable()


def run(mini_batch):
    global _batches
    _batches += 1
    if _RSS_DIR:
        _record()
    return mini_batch[["id"]]


def shutdown():
    if _profiler is not None:
        _profiler.disable()
        _profiler.dump_stats(os.path.join(_PROFILE, f"{os.getpid()}.prof"))
    if _RSS_DIR:
        _record()


def _record():
    status = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                status[name] = int(value.split()[0]) / 1024
    data = {"pid": os.getpid(), "vmhwm_mb": status.get("VmHWM"), "vmrss_mb": status.get("VmRSS"),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "mini_batches": _batches}
    path = os.path.join(_RSS_DIR, f"{os.getpid()}.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle)
    os.replace(path + ".tmp", path)


def _what_if():
    """Prototypes of two suggested engine changes, patched into this worker only."""
    import sys

    import pyarrow as pa
    import pyarrow.csv as pacsv
    from airflow_parallel_run.inputs.tabular import delimited

    # The worker runs as ``python -m airflow_parallel_run.engine.worker``: its module is __main__.
    worker = sys.modules["__main__"]
    if not hasattr(worker, "encode_result"):
        from airflow_parallel_run.engine import worker

    encode = worker.encode_result

    def encode_result(result, spec):
        # Numeric columns only, anything else goes the pandas way. Ints come out byte for
        # byte as from to_csv; floats do not always (pyarrow: 100, 1e-7, 0.00001; pandas:
        # 100.0, 1e-07, 1e-05). This benchmark's results are ints, so only the exact int
        # path is timed; an engine change should take ints only (or decide on the format).
        sep = spec.append_row_separator
        if (worker._is_dataframe(result) and spec.output_action == "append_row"
                and len(result) and len(sep) == 1
                and all(kind.kind in "iuf" for kind in result.dtypes)):
            header = (sep.join(str(c) for c in result.columns)
                      if spec.append_row_dataframe_header else None)
            sink = pa.BufferOutputStream()
            pacsv.write_csv(pa.Table.from_pandas(result, preserve_index=False), sink,
                            pacsv.WriteOptions(include_header=False, delimiter=sep,
                                               quoting_style="needed"))
            return len(result), sink.getvalue().to_pybytes(), header
        return encode(result, spec)

    worker.encode_result = encode_result
    check_quotes = delimited._check_quotes

    def _check_quotes(piece, data, quote):
        if data.find(quote) >= 0:  # memchr: no quote at all, nothing to count
            check_quotes(piece, data, quote)

    delimited._check_quotes = _check_quotes
'''

# The baseline: one process, the whole table at once, then run() on slices.
BASELINE_SOURCE = '''"""Baseline: read the whole table in one process, call run() on slices of about 10 MB.

    python baseline.py SCRIPT csv|parquet PATH SLICE_BYTES [--report]

--report prints the peak RSS and the time of each phase as JSON.
"""
import time

started = time.perf_counter()
import importlib.util
import json
import os
import sys


def main():
    script, fmt, path, slice_bytes = sys.argv[1:5]
    spec = importlib.util.spec_from_file_location("score", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    marks = [("start", time.perf_counter())]
    if fmt == "csv":
        import pandas as pd

        marks.append(("import pandas", time.perf_counter()))
        frame = pd.read_csv(path, engine="pyarrow")
        marks.append(("pandas.read_csv(engine=pyarrow)", time.perf_counter()))
    else:
        import pandas
        import pyarrow.parquet as pq

        marks.append(("import pandas, pyarrow.parquet", time.perf_counter()))
        table = pq.read_table(path)
        marks.append(("pyarrow.parquet.read_table", time.perf_counter()))
        frame = table.to_pandas()
        marks.append(("Table.to_pandas", time.perf_counter()))
    rows = len(frame)
    step = max(1, rows * int(slice_bytes) // os.path.getsize(path))
    results = [module.run(frame.iloc[start:start + step]) for start in range(0, rows, step)]
    marks.append(("run() on the slices", time.perf_counter()))
    assert sum(len(r) for r in results) == rows
    if "--report" in sys.argv:
        with open("/proc/self/status") as handle:
            hwm = next(int(l.split()[1]) for l in handle if l.startswith("VmHWM:"))
        phases = {b[0]: round(b[1] - a[1], 3) for a, b in zip(marks, marks[1:])}
        print(json.dumps({"vmhwm_mb": hwm / 1024, "slices": len(results),
                          "rows_per_slice": step, "phases": phases,
                          "since_interpreter_start": round(time.perf_counter() - started, 3)}))


main()
'''


# -- data ----------------------------------------------------------------------------------------


def make_table() -> None:
    """The CSV and the Parquet file, from one pass over the same generated rows (once)."""
    HERE.mkdir(parents=True, exist_ok=True)
    SCORE.write_text(SCORE_SOURCE)
    BASELINE.write_text(BASELINE_SOURCE)
    if READY.exists() and CSV.exists() and PARQUET.exists():
        return
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    print(f"  creating {CSV} and {PARQUET} (once) ...", flush=True)
    READY.unlink(missing_ok=True)
    rng = np.random.default_rng(20240501)
    schema = pa.schema([("id", pa.int64()), ("a", pa.float64()), ("b", pa.float64()),
                        ("c", pa.int64())])
    chunk = 4 * ROW_GROUP
    with open(CSV, "wb") as csv_file, pq.ParquetWriter(PARQUET, schema) as parquet:
        csv_file.write(b"id,a,b,c\n")
        for start in range(0, ROWS, chunk):
            n = min(chunk, ROWS - start)
            part = pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                             "a": np.round(rng.uniform(0, 10_000, n), 9),
                             "b": np.round(rng.uniform(0, 1_000, n), 9),
                             "c": rng.integers(10**12, 10**13, n)}, schema=schema)
            pacsv.write_csv(part, csv_file, pacsv.WriteOptions(include_header=False))
            parquet.write_table(part, row_group_size=ROW_GROUP)
    READY.touch()


def make_big_parquet() -> None:
    """BIG_ROWS rows like the 400 MB table's (ids 0..BIG_ROWS-1), in row groups of ROW_GROUP
    rows, as Parquet only (once)."""
    if BIG_READY.exists() and BIG_PARQUET.exists():
        return
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    print(f"  creating {BIG_PARQUET} (once) ...", flush=True)
    BIG_READY.unlink(missing_ok=True)
    rng = np.random.default_rng(20240502)
    schema = pa.schema([("id", pa.int64()), ("a", pa.float64()), ("b", pa.float64()),
                        ("c", pa.int64())])
    chunk = 4 * ROW_GROUP
    with pq.ParquetWriter(BIG_PARQUET, schema) as parquet:
        for start in range(0, BIG_ROWS, chunk):
            n = min(chunk, BIG_ROWS - start)
            parquet.write_table(pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                                          "a": np.round(rng.uniform(0, 10_000, n), 9),
                                          "b": np.round(rng.uniform(0, 1_000, n), 9),
                                          "c": rng.integers(10**12, 10**13, n)}, schema=schema),
                                row_group_size=ROW_GROUP)
    BIG_READY.touch()


def warm(*paths: Path) -> None:
    """Read the inputs once, so no side pays for a cold page cache."""
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(64 * 1024**2):
                pass


# -- commands ------------------------------------------------------------------------------------


def engine_command(path: Path, fmt: str, output: Path, *extra: str) -> list[str]:
    return [PARALLEL_RUN, str(SCORE), "--input", str(path), "--input-type", fmt,
            "--output", str(output), "--mini-batch-size", MINI_BATCH,
            "--process-count-per-node", str(PROCESSES), "--quiet", *extra]


def baseline_command(path: Path, fmt: str, *extra: str) -> list[str]:
    return [PYTHON, str(BASELINE), str(SCORE), fmt, str(path), str(MINI_BATCH_BYTES), *extra]


def engine(name: str, path: Path, fmt: str, *extra: str) -> Contender:
    """An engine run into its own fresh output folder ``DATA/out/tabular-<name>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    slug = f"tabular-{slug}"
    return Contender(name, lambda: fresh_dir(slug),
                     engine_command(path, fmt, DATA / "out" / slug, *extra))


def output_of(contender: Contender) -> Path:
    return Path(contender.command[contender.command.index("--output") + 1])


def check_output(output: Path, rows: int = ROWS) -> str | None:
    """None when OUTPUT/parallel_run_step.txt holds the ids 0..rows-1, one a line, in order."""
    import numpy as np
    import pyarrow.csv as pacsv

    path = output / "parallel_run_step.txt"
    if not path.exists():
        return f"{path}: missing"
    with open(path, "rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))
    if lines != rows:
        return f"{path}: {lines:,} lines, expected {rows:,}"
    ids = pacsv.read_csv(path, read_options=pacsv.ReadOptions(autogenerate_column_names=True))
    if ids.num_columns != 1 or not np.array_equal(ids.column(0).to_numpy(), np.arange(rows)):
        return f"{path}: {lines:,} lines, but not the ids 0..{rows - 1} in order"
    return None


# -- timing --------------------------------------------------------------------------------------


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for descendants included
    return usage.ru_utime + usage.ru_stime


def alternate(contenders: Sequence[Contender], repeats: int
              ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """benchlib.alternate, plus the CPU seconds of each command (it and its children).

    Takes turns (A B C A B C ...); a measurement during which other processes of the machine
    used more than benchlib.DISTURBED of a core is taken again, up to benchlib.TRIES times,
    and the calmest kept. Returns (wall seconds, CPU seconds) per contender.
    """
    disturbed = getattr(benchlib, "DISTURBED", 0.1)
    tries = getattr(benchlib, "TRIES", 3)
    walls: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpus: dict[str, list[float]] = {c.name: [] for c in contenders}
    for round_number in range(1, repeats + 1):
        for contender in contenders:
            best: tuple[float, float, float] | None = None  # (disturbance, wall, cpu)
            for attempt in range(1, tries + 1):
                contender.prepare()
                before = _children_cpu()
                timing = run_timed(contender.command)
                cpu = _children_cpu() - before
                disturbance = timing.others_cpu / timing.seconds
                if best is None or disturbance < best[0]:
                    best = (disturbance, timing.seconds, cpu)
                again = disturbance > disturbed and attempt < tries
                verdict = ("" if disturbance <= disturbed
                           else "; disturbed, measuring again" if again
                           else "; disturbed, keeping the calmest")
                print(f"  round {round_number}: {contender.name:<34} {timing.seconds:6.2f} s, "
                      f"{cpu:5.2f} CPU-s   (others meanwhile: {timing.others_cpu:.2f} CPU-s"
                      f"{verdict}; {load_average()})", flush=True)
                if not again:
                    break
            assert best is not None
            walls[contender.name].append(best[1])
            cpus[contender.name].append(best[2])
    return walls, cpus


# -- memory --------------------------------------------------------------------------------------


def measure_memory(path: Path, fmt: str, name: str) -> dict:
    """Peak RSS of each worker (VmHWM from run()/shutdown(), and the monitor's samples)."""
    output = fresh_dir(f"tabular-{name}-memory")
    rss_dir = fresh_dir(f"tabular-{name}-rss")
    env = dict(os.environ, BENCH_TABULAR_RSS_DIR=str(rss_dir))
    subprocess.run(engine_command(path, fmt, output, "--resource-monitor-interval", "0.5"),
                   env=env, check=True, stdout=subprocess.DEVNULL)
    workers = {}
    for name in sorted(glob.glob(str(rss_dir / "*.json"))):
        data = json.loads(Path(name).read_text())
        workers[data["pid"]] = data
    sampled: dict[int, float] = {}
    names: dict[int, str] = {}
    for usage in glob.glob(str(output / "logs/perf/*/processes_resource_usage.csv")):
        with open(usage) as handle:
            header = handle.readline().strip().split(",")
            for line in handle:
                row = dict(zip(header, line.strip().split(","), strict=False))
                pid = int(row["pid"])
                sampled[pid] = max(sampled.get(pid, 0.0), float(row["rss_mb"]))
                names[pid] = row["process"]
    for pid, data in workers.items():
        data["sampled_mb"] = sampled.get(pid)
        data["process"] = names.get(pid, "?")
    return {"workers": workers, "baseline": baseline_report(path, fmt)}


def baseline_report(path: Path, fmt: str) -> dict:
    done = subprocess.run(baseline_command(path, fmt, "--report"), check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- profile -------------------------------------------------------------------------------------

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def _when(text: str) -> float:
    return datetime.fromisoformat(text.rstrip("Z") + "+00:00").timestamp()


def phases(output: Path, started: float, ended: float) -> list[str]:
    """The job's phases from its logs: start-up and planning, workers, the reducer."""
    master = (output / "logs/sys/master_role.txt").read_text().splitlines()
    planned_line = next(line for line in master if " planned " in line)
    planned = _when(_STAMP.match(planned_line).group(1))
    plan_s = float(re.search(r" in ([\d.]+) s;", planned_line).group(1))
    result = next(_when(_STAMP.match(line).group(1)) for line in master if "job result" in line)
    rows = (output / "logs/sys/job_report/processed_mini_batches.csv").read_text().splitlines()
    header = rows[0].split(",")
    batches = [dict(zip(header, r.split(","), strict=True)) for r in rows[1:]]
    first_start = min(_when(b["start"]) for b in batches)
    last_end = max(_when(b["start"]) + float(b["duration_s"]) for b in batches)
    lines = [f"  command wall time                          {ended - started:5.2f} s",
             f"  start-up + planning (plan itself {plan_s:.2f} s)  {planned - started:5.2f} s",
             f"  workers spawned -> first mini-batch        {first_start - planned:5.2f} s",
             f"  mini-batches, first start -> last end      {last_end - first_start:5.2f} s",
             f"  reduce, last end -> 'job result' line      {result - last_end:5.2f} s",
             f"  exit                                       {ended - result:5.2f} s"]
    for process in sorted({b["process"] for b in batches}):
        mine = sorted((b for b in batches if b["process"] == process), key=lambda b: b["start"])
        busy = sum(float(b["duration_s"]) for b in mine)
        lines.append(f"  {process}: {len(mine)} mini-batches, busy {busy:.2f} s; the first "
                     f"{float(mine[0]['duration_s']):.2f} s (it imports pandas and pyarrow), "
                     f"the others {median([float(b['duration_s']) for b in mine[1:]]) * 1000:.0f}"
                     " ms each (median)")
    return lines


PROFILE_ROWS = [
    ("read_piece", "tabular/reading.py", "read_piece"),
    ("  CsvFormat.read (pyarrow.csv.read_csv inside)", "tabular/delimited.py", "read"),
    ("  ParquetFormat.read (ParquetFile.read_row_groups)", "tabular/parquet.py", "read"),
    ("    owned_span (range read into a reused buffer)", "tabular/byte_ranges.py", "owned_span"),
    ("    _check_quotes (bytes.count)", "tabular/delimited.py", "_check_quotes"),
    ("  to_pandas (Table.to_pandas)", "tabular/formats.py", "to_pandas"),
    ("run() (the entry script)", "score.py", "run"),
    ("encode_result", "worker.py", "encode_result"),
    ("encode_result (prototype)", "score.py", "encode_result"),
    ("  DataFrame.to_csv", "generic.py", "to_csv"),
    ("  pyarrow.csv.write_csv (prototype)", "csv.pyx", "write_csv"),
    ("RecordLog.write (the record)", "results.py", "write"),
    ("imports on first use (pandas, pyarrow)", "<frozen importlib._bootstrap>", "_find_and_load"),
]


def profile(name: str, path: Path, fmt: str, *extra: str) -> list[str]:
    import pstats

    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    output = fresh_dir(f"tabular-profile-{slug}")
    prof_dir = fresh_dir(f"tabular-profile-{slug}-prof")
    env = dict(os.environ, BENCH_TABULAR_PROFILE=str(prof_dir))
    started = time.time()
    subprocess.run(engine_command(path, fmt, output, *extra), env=env, check=True,
                   stdout=subprocess.DEVNULL)
    ended = time.time()
    lines = [f"{name}: phases (cProfile on in the workers slows them somewhat)"]
    lines += phases(output, started, ended)
    stats = pstats.Stats(*glob.glob(str(prof_dir / "*.prof"))).stats  # type: ignore[attr-defined]

    def cumulative(file_end: str, func: str) -> tuple[float, int] | None:
        found = [(cum, calls) for (file, _, f), (_, calls, _, cum, _) in stats.items()
                 if file.endswith(file_end) and f == func]
        return max(found) if found else None

    total = (cumulative("worker.py", "run_mini_batch") or (0.0, 0))[0]
    lines.append(f"  inside the workers (cProfile, both workers summed): run_mini_batch "
                 f"{total:.2f} s")
    for label, file_end, func in PROFILE_ROWS:
        found = cumulative(file_end, func)
        if found is None:
            continue
        cum, calls = found
        lines.append(f"    {label:<46} {cum:6.2f} s {cum / total * 100:4.0f} %  ({calls} calls)")
    return lines


def profile_all() -> list[str]:
    lines = []
    for name, path, fmt, extra in (("csv", CSV, "csv", ()), ("parquet", PARQUET, "parquet", ()),
                                   ("csv, prototypes", CSV, "csv", WHAT_IF),
                                   ("parquet, prototypes", PARQUET, "parquet", WHAT_IF)):
        lines += ["", *profile(name, path, fmt, *extra)]
    for fmt, path in (("csv", CSV), ("parquet", PARQUET)):
        report = baseline_report(path, fmt)
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in report["phases"].items())
        lines += ["", f"baseline {fmt}: {report['since_interpreter_start']:.2f} s after its "
                      f"first line ran: {steps}"]
    print("\n".join(lines), flush=True)
    print("\nprototypes of suggested engine changes, timed in turns with the engine as it is:")
    contenders = [engine("engine csv", CSV, "csv"),
                  engine("engine csv, prototypes", CSV, "csv", *WHAT_IF),
                  Contender("baseline csv", lambda: None, baseline_command(CSV, "csv")),
                  engine("engine parquet", PARQUET, "parquet"),
                  engine("engine parquet, prototypes", PARQUET, "parquet", *WHAT_IF),
                  Contender("baseline parquet", lambda: None, baseline_command(PARQUET, "parquet"))]
    walls, cpus = alternate(contenders, REPEATS)
    for fmt in ("csv", "parquet"):
        base = median(walls[f"baseline {fmt}"])
        for name in (f"engine {fmt}", f"engine {fmt}, prototypes"):
            contender = next(c for c in contenders if c.name == name)
            problem = check_output(output_of(contender))
            line = (f"{name}: {median(walls[name]):.2f} s, {median(cpus[name]):.2f} CPU-s; "
                    f"baseline {base:.2f} s, {median(cpus[f'baseline {fmt}']):.2f} CPU-s -> "
                    f"{base / median(walls[name]):.2f} x; output "
                    f"{'OK' if problem is None else problem}")
            lines.append(line)
            print(line, flush=True)
    return lines


# -- main ----------------------------------------------------------------------------------------


def main(with_profile: bool = False, parquet_only: bool = False) -> list[Result]:
    import pyarrow

    print(f"bench_tabular: {ROWS:,} rows x 4 numeric columns, mini_batch_size {MINI_BATCH}, "
          f"{PROCESSES} processes, {REPEATS} rounds; {machine()}; "
          f"pyarrow {pyarrow.__version__}, pyarrow.cpu_count() {pyarrow.cpu_count()}; "
          f"{load_average()}")
    make_table()
    make_big_parquet()
    warm(CSV, PARQUET, BIG_PARQUET)
    print(f"  {CSV}: {CSV.stat().st_size / 1e6:.0f} MB; {PARQUET}: "
          f"{PARQUET.stat().st_size / 1e6:.0f} MB, {ROWS // ROW_GROUP} row groups; "
          f"{BIG_PARQUET}: {BIG_PARQUET.stat().st_size / 1e6:.0f} MB, {BIG_ROWS // ROW_GROUP} "
          "row groups")
    results = parquet_results() if parquet_only else speed_results() + parquet_results(big_only=True)
    results.append(memory_result(("parquet", "parquet-4gb") if parquet_only
                                 else ("csv", "parquet", "parquet-4gb")))
    if with_profile:
        profile_all()
    return results


def parquet_results(big_only: bool = False) -> list[Result]:
    """The engine against read_table().to_pandas() + run() on the 400 MB and the 4 GB
    Parquet tables (only the 4 GB one when ``big_only``: speed_results() times the other)."""
    tables = [("4gb", BIG_PARQUET, BIG_ROWS, TARGET_SPEEDUP_BIG)]
    if not big_only:
        tables.insert(0, ("400mb", PARQUET, ROWS, TARGET_SPEEDUP_PARQUET))
    contenders = []
    for size, path, _, _ in tables:
        contenders += [engine(f"engine parquet {size}", path, "parquet"),
                       Contender(f"baseline parquet {size}", lambda: None,
                                 baseline_command(path, "parquet"))]
    walls, cpus = alternate(contenders, REPEATS)
    results = []
    for size, _path, rows, target in tables:
        ours, base = (median(walls[f"{who} parquet {size}"]) for who in ("engine", "baseline"))
        ours_cpu, base_cpu = (median(cpus[f"{who} parquet {size}"]) for who in ("engine", "baseline"))
        problem = check_output(output_of(contenders[[c.name for c in contenders].index(
            f"engine parquet {size}")]), rows)
        rounds = {who: ", ".join(f"{t:.2f}" for t in walls[f"{who} parquet {size}"])
                  for who in ("engine", "baseline")}
        note = (f"parquet {size}: engine {ours:.2f} s ({rounds['engine']}), {ours_cpu:.2f} CPU-s; "
                f"baseline read_table().to_pandas() {base:.2f} s ({rounds['baseline']}), "
                f"{base_cpu:.2f} CPU-s; speedup {base / ours:.2f} x; engine output "
                f"{'OK, ' + format(rows, ',') + ' ids in order' if problem is None else problem}")
        print(note, flush=True)
        results.append(Result(f"parquet {size} ({rows:,} rows), 10MB, 2 proc", f"{ours:.2f} s",
                              f"{base:.2f} s", f"{base / ours:.2f} x", f">= {target} x",
                              base / ours >= target and problem is None, note))
    return results


def speed_results() -> list[Result]:
    """The engine against the baseline, per format, with pyarrow's threads and with one."""
    contenders = []
    for fmt, path in (("csv", CSV), ("parquet", PARQUET)):
        contenders += [
            engine(f"engine {fmt}", path, fmt),
            Contender(f"baseline {fmt}", lambda: None, baseline_command(path, fmt)),
            engine(f"engine {fmt}, 1 arrow thread", path, fmt, *ONE_THREAD),
            Contender(f"baseline {fmt}, 1 arrow thread", lambda: None,
                      ["env", "OMP_NUM_THREADS=1", *baseline_command(path, fmt)]),
        ]
    walls, cpus = alternate(contenders, REPEATS)
    results = []
    for fmt, reader in (("csv", 'pandas.read_csv(engine="pyarrow")'),
                        ("parquet", "pyarrow.parquet.read_table().to_pandas()")):
        names = (f"engine {fmt}", f"baseline {fmt}", f"engine {fmt}, 1 arrow thread",
                 f"baseline {fmt}, 1 arrow thread")
        ours, base, single, base_single = (median(walls[n]) for n in names)
        ours_cpu, base_cpu, single_cpu, base_single_cpu = (median(cpus[n]) for n in names)
        speedup = base / ours
        checked = [c for c in contenders if c.name in (names[0], names[2])]
        problem = next((p for c in checked if (p := check_output(output_of(c)))), None)

        def rounds(name: str) -> str:
            return ", ".join(f"{t:.2f}" for t in walls[name])

        note = (f"{fmt}: engine {ours:.2f} s ({rounds(names[0])}), {ours_cpu:.2f} CPU-s; "
                f"baseline {reader} {base:.2f} s ({rounds(names[1])}), {base_cpu:.2f} CPU-s; "
                f"speedup {speedup:.2f} x\n"
                f"{fmt}: engine with OMP_NUM_THREADS=1 in the workers {single:.2f} s "
                f"({rounds(names[2])}), {single_cpu:.2f} CPU-s: {base / single:.2f} x\n"
                f"{fmt}: baseline with OMP_NUM_THREADS=1 {base_single:.2f} s "
                f"({rounds(names[3])}), {base_single_cpu:.2f} CPU-s; the engine is "
                f"{base_single / ours:.2f} x faster than that\n"
                f"{fmt}: engine output "
                f"{'OK, 8,000,000 ids in order' if problem is None else problem}")
        print(note, flush=True)
        target = TARGET_SPEEDUP if fmt == "csv" else TARGET_SPEEDUP_PARQUET
        results.append(Result(f"{fmt} 400 MB table, 10MB, 2 proc", f"{ours:.2f} s",
                              f"{base:.2f} s", f"{speedup:.2f} x", f">= {target} x",
                              speedup >= target and problem is None, note))
    return results


def memory_result(tables: Sequence[str] = ("csv", "parquet", "parquet-4gb")) -> Result:
    """The highest peak RSS of any worker, per table, against the baseline's."""
    peaks = []
    lines = []
    paths = {"csv": CSV, "parquet": PARQUET, "parquet-4gb": BIG_PARQUET}
    for fmt in tables:
        memory = measure_memory(paths[fmt], fmt.split("-")[0], fmt)
        for pid, data in sorted(memory["workers"].items()):
            peaks.append(data["vmhwm_mb"])
            sampled = data["sampled_mb"]
            lines.append(f"{fmt}: worker {data['process']} (pid {pid}, {data['mini_batches']} "
                         f"mini-batches): peak RSS (VmHWM) {data['vmhwm_mb']:.0f} MB; "
                         f"monitor's highest sample "
                         f"{'-' if sampled is None else f'{sampled:.0f} MB'}")
        base = memory["baseline"]
        lines.append(f"{fmt}: baseline peak RSS {base['vmhwm_mb']:.0f} MB "
                     f"({base['slices']} slices of {base['rows_per_slice']:,} rows)")
    print("\n".join(lines), flush=True)
    worst = max(peaks) if peaks else float("nan")
    return Result("worker peak RSS, 10MB mini-batches", f"{worst:.0f} MB", "-",
                  f"max of {len(peaks)} workers", f"<= {TARGET_RSS_MB:g} MB",
                  bool(peaks) and worst <= TARGET_RSS_MB, "\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true",
                        help="also profile the engine's workers and time prototypes of fixes")
    parser.add_argument("--parquet", action="store_true",
                        help="only the Parquet tables (400 MB and 4 GB) and their workers' memory")
    args = parser.parse_args()
    found = main(args.profile, args.parquet)
    print()
    print(table(found))
