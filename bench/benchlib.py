"""What the engine benchmarks share: generated inputs, timed commands, result rows.

Every benchmark times whole commands (``parallel-run`` or a baseline script) as subprocesses,
so interpreter start-up is in the numbers, as a user would see it. Inputs are generated once
under ``/tmp/bench-data`` (``BENCH_DATA`` overrides it) and reused; outputs go there too,
never into the repository. Benchmarks print ratios; they assert nothing about time.
"""

from __future__ import annotations

import compileall
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

BENCH_DIR = Path(__file__).resolve().parent
SCRIPTS = BENCH_DIR / "scripts"
POOL_BASELINE = BENCH_DIR / "pool_baseline.py"
DATA = Path(os.environ.get("BENCH_DATA", "/tmp/bench-data"))
PYTHON = sys.executable
PARALLEL_RUN = str(Path(sys.executable).parent / "parallel-run")


def machine() -> str:
    return f"nproc {os.cpu_count()}, Python {platform.python_version()}, {platform.machine()}"


def file_set(name: str, count: int, content: Callable[[int], bytes]) -> Path:
    """``DATA/name`` with ``count`` files ``0000000.txt``...; made once, reused while complete.

    The "ready" mark lives beside the folder, not in it, so it is never an input item.
    """
    folder = DATA / name
    ready = DATA / f"{name}.ready"
    if ready.exists():
        return folder
    print(f"  creating {count:,} files in {folder} (once) ...", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        fd = os.open(folder / f"{i:07d}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            data = content(i)
            if data:
                os.write(fd, data)
        finally:
            os.close(fd)
    ready.touch()
    return folder


def warm(folder: Path) -> None:
    """Read every file once, so neither side of a comparison pays for a cold page cache."""
    with os.scandir(folder) as entries:
        for entry in entries:
            with open(entry.path, "rb") as handle:
                handle.read()


def fresh_dir(name: str) -> Path:
    """An empty output folder ``DATA/out/name`` (a leftover run would be resumed, not redone)."""
    path = DATA / "out" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def engine_command(script: str, folder: Path, output: Path, mini_batch_size: int,
                   processes: int) -> list[str]:
    return [PARALLEL_RUN, str(SCRIPTS / script), "--input", str(folder), "--output", str(output),
            "--mini-batch-size", str(mini_batch_size),
            "--process-count-per-node", str(processes), "--quiet"]


def baseline_command(script: str, folder: Path, output_file: Path, chunk: int,
                     processes: int) -> list[str]:
    return [PYTHON, str(POOL_BASELINE), str(SCRIPTS / script), "--input", str(folder),
            "--output", str(output_file), "--chunk", str(chunk), "--processes", str(processes)]


def busy_cpu_seconds() -> float | None:
    """CPU seconds every process of the machine has used since boot (Linux), else None."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_wait: float = 5.0, window: float = 0.5, limit: float = 0.2) -> float:
    """Wait (at most ``max_wait`` s) for a ``window`` in which the machine's other processes
    use under ``limit`` of a core: this machine may be shared. Returns what they used."""
    deadline = time.monotonic() + max_wait
    while True:
        before = busy_cpu_seconds()
        time.sleep(window)
        after = busy_cpu_seconds()
        if before is None or after is None:
            return 0.0
        load = (after - before) / window
        if load < limit or time.monotonic() >= deadline:
            return load


@dataclass
class Timing:
    seconds: float  # wall clock of the whole command
    others_cpu: float  # CPU seconds that other processes of the machine used meanwhile
    cpu: float = 0.0  # CPU seconds of the command itself and its (waited-for) descendants

    @property
    def disturbance(self) -> float:
        """Cores' worth of other work while this ran (0.5: half a core all along)."""
        return self.others_cpu / self.seconds


def compile_package() -> None:
    """The package's bytecode, as an installed package has it (pip compiles at install).
    Without it, where PYTHONDONTWRITEBYTECODE is set (as on the VM these numbers were taken
    on), every process of a job, the workers included, compiles the package's source again:
    about 0.1 CPU-s each, measured as the engine's cost."""
    import airflow_parallel_run  # the copy the timed commands import, by the same path

    compileall.compile_dir(str(Path(airflow_parallel_run.__file__).parent), quiet=1)


def run_timed(command: Sequence[str]) -> Timing:
    """Time a whole command; its output is discarded, a failure raises."""
    compile_package()
    wait_for_quiet()
    busy, ours = busy_cpu_seconds(), children_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    busy_after, ours_after = busy_cpu_seconds(), children_cpu_seconds()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n"
                           f"{done.stderr.decode(errors='replace')[-2000:]}")
    others = 0.0
    if busy is not None and busy_after is not None:
        others = max(0.0, (busy_after - busy) - (ours_after - ours))
    return Timing(elapsed, others, ours_after - ours)


@dataclass
class Contender:
    """One side of a comparison: how to clear its output, and the command to time."""

    name: str
    prepare: Callable[[], object]  # what it returns is not used
    command: Sequence[str]


DISTURBED = 0.1  # other processes' CPU per second of wall time above which we measure again
TRIES = 3  # measurements at most of one contender in one round
RETRY_BUDGET = 60.0  # seconds one comparison may spend measuring again


def alternate(contenders: Sequence[Contender], repeats: int) -> dict[str, list[float]]:
    """Wall-clock seconds of each contender in each round: see :func:`alternate_timings`."""
    timings = alternate_timings(contenders, repeats)
    return {name: [t.seconds for t in kept] for name, kept in timings.items()}


def alternate_timings(contenders: Sequence[Contender], repeats: int) -> dict[str, list[Timing]]:
    """Each contender's command timed by :func:`run_timed`, in turns: see
    :func:`alternate_measured`."""
    return alternate_measured(contenders, repeats, lambda contender: run_timed(contender.command))


ContenderT = TypeVar("ContenderT", bound=Contender)
TimingT = TypeVar("TimingT", bound=Timing)


def alternate_measured(contenders: Sequence[ContenderT], repeats: int,
                       measure: Callable[[ContenderT], TimingT]) -> dict[str, list[TimingT]]:
    """Measure each contender ``repeats`` times, taking turns (A B A B ...), so that drift in
    the machine's speed falls on both sides alike.

    The machine may be shared: a measurement during which other processes used more than
    ``DISTURBED`` of a core is taken again (up to ``TRIES`` times, within ``RETRY_BUDGET``
    seconds per comparison); the calmest one is kept, and every one is printed.
    """
    timings: dict[str, list[TimingT]] = {c.name: [] for c in contenders}
    retried = [0.0]  # seconds spent measuring again, shared by the whole comparison
    for round_number in range(1, repeats + 1):
        for contender in contenders:
            timings[contender.name].append(
                _calmest(contender, round_number, measure, retried))
    kept_disturbed = sum(t.disturbance > DISTURBED for kept in timings.values() for t in kept)
    if kept_disturbed:
        print(f"  warning: {kept_disturbed} of {repeats * len(contenders)} measurements kept "
              "were disturbed by other processes; the numbers are less trustworthy", flush=True)
    return timings


def _calmest(contender: ContenderT, round_number: int, measure: Callable[[ContenderT], TimingT],
             retried: list[float]) -> TimingT:
    """One round's measurement of one contender: the calmest of up to ``TRIES``."""
    best: TimingT | None = None
    for attempt in range(1, TRIES + 1):
        contender.prepare()
        timing = measure(contender)
        if attempt > 1:
            retried[0] += timing.seconds
        if best is None or timing.disturbance < best.disturbance:
            best = timing
        again = (timing.disturbance > DISTURBED and attempt < TRIES
                 and retried[0] < RETRY_BUDGET)
        verdict = ("" if timing.disturbance <= DISTURBED
                   else "; disturbed, measuring again" if again
                   else "; disturbed, keeping the calmest")
        print(f"  round {round_number}: {contender.name:<28} {timing.seconds:8.2f} s, "
              f"{timing.cpu:6.2f} CPU-s   (other processes meanwhile: "
              f"{timing.others_cpu:.2f} CPU-s{verdict})", flush=True)
        if not again:
            break
    assert best is not None
    return best


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def same_lines(a: Path, b: Path) -> tuple[bool, bool]:
    """(the two files hold the same lines once sorted, they are identical as they are)."""
    lines_a = a.read_bytes().splitlines()
    lines_b = b.read_bytes().splitlines()
    return sorted(lines_a) == sorted(lines_b), lines_a == lines_b


@dataclass
class Result:
    """One benchmark's row in the table printed by run_all.py."""

    name: str
    ours: str  # the engine's number
    reference: str  # the baseline's number
    measure: str  # what is compared: a ratio, a per-mini-batch cost, a speedup, a peak
    target: str
    passed: bool
    notes: str = ""

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "MISS"


COLUMNS = ("benchmark", "engine", "reference", "result", "target", "verdict")


def table(results: Sequence[Result]) -> str:
    rows = [COLUMNS] + [(r.name, r.ours, r.reference, r.measure, r.target, r.verdict)
                        for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def fmt(row: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"

    lines = [fmt(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(row) for row in rows[1:]]
    return "\n".join(lines)


def report(result: Result) -> None:
    print()
    print(table([result]))
    if result.notes:
        print(result.notes)
