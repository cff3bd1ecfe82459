"""What the peer benchmarks share: the contenders' commands, a measurement of a command's
whole process tree, the checks of each output, and the rows of the tables.

A contender is a whole command, as in ``bench/benchlib.py`` (whose alternation and
disturbance rules are reused): ``parallel-run`` from the project's virtualenv, and
``ray_job.py`` / ``dask_job.py`` run by the peers' own virtualenv (``.venv-peers/``, made
by ``make bench-peers``; ``PEERS_PYTHON`` overrides it). While a command runs, a thread
samples its process tree every 50 ms: the peak of the summed RSS of every process in it
(shared pages count in each process, as ``ps`` shows them), the peak of the summed PSS
every 50 ms too (a page shared by N processes counts 1/N in each: the tree's real footprint,
which RSS overstates when workers share pages with the process they were forked from),
and every process it started,
so that what is still alive after the command exits can be named. Its CPU seconds are
those of the command and its waited-for descendants (``RUSAGE_CHILDREN``), or the sampled
sum over the tree when that is larger (processes that outlive the command are not waited
for). A command still running after ``PEERS_HANG_LIMIT`` seconds (300) is killed with its
tree and reported as hung. ``PEERS_REPEATS`` (3) sets the rounds of each comparison.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    DATA,
    Contender,
    Timing,
    alternate_measured,
    busy_cpu_seconds,
    children_cpu_seconds,
    fresh_dir,
    median,
    wait_for_quiet,
)

PEERS_DIR = Path(__file__).resolve().parent
PEER_SCRIPTS = PEERS_DIR / "scripts"
REPO = PEERS_DIR.parent.parent
PEERS_PYTHON = os.environ.get("PEERS_PYTHON", str(REPO / ".venv-peers" / "bin" / "python"))
HANG_LIMIT = float(os.environ.get("PEERS_HANG_LIMIT", "300"))
OUT = DATA / "out" / "peers"
REPEATS = int(os.environ.get("PEERS_REPEATS", "3"))  # rounds of each comparison
SAMPLE_EVERY = 0.05  # seconds between two samples of a command's process tree
RESCAN_EVERY = 4  # samples between two searches for new processes (a search costs ~10 ms)
EXIT_GRACE = 2.0  # seconds a contender's processes get to end after its command exits


def peer_command(tool: str, kind: str, script: Path | str, source: Path, output: Path,
                 *options: str, env: Sequence[str] = ()) -> list[str]:
    """``ray_job.py`` or ``dask_job.py`` (TOOL "ray" or "dask") in the peers' virtualenv."""
    return ["env", f"PYTHONPATH={PEERS_DIR}", *env, PEERS_PYTHON, str(PEERS_DIR / f"{tool}_job.py"),
            kind, str(script), str(source), str(output), *options]


def peer_versions() -> str:
    done = subprocess.run([PEERS_PYTHON, "-c", "import ray, dask, distributed, pandas, pyarrow; "
                           "print(f'Ray {ray.__version__}, Dask {dask.__version__} (distributed "
                           "{distributed.__version__}), pandas {pandas.__version__}, pyarrow "
                           "{pyarrow.__version__}')"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


# -- checks --------------------------------------------------------------------------------------


@dataclass
class Check:
    """What an output holds against what it should: every item once, in order if promised."""

    items: int  # lines in the output
    missing: int  # expected lines not in it
    duplicated: int  # lines beyond the first of each
    unexpected: int  # lines that are no expected line
    in_order: bool | None  # None: the contender does not promise the input order

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.unexpected) and self.in_order is not False

    def describe(self) -> str:
        order = {None: "order not promised", True: "in order", False: "OUT OF ORDER"}[self.in_order]
        if self.ok:
            return f"yes ({self.items:,} items, {order})"
        return (f"NO: {self.items:,} lines, {self.missing:,} missing, {self.duplicated:,} "
                f"duplicated, {self.unexpected:,} unexpected, {order}")


def check_lines(output: Path, expected: Sequence[bytes], ordered: bool) -> Check:
    """OUTPUT's lines against EXPECTED (the lines in input order)."""
    lines = output.read_bytes().splitlines() if output.exists() else []
    counts = Counter(lines)
    wanted = set(expected)
    return Check(items=len(lines), missing=len(wanted - counts.keys()),
                 duplicated=sum(n - 1 for n in counts.values()),
                 unexpected=sum(n for line, n in counts.items() if line not in wanted),
                 in_order=(lines == list(expected)) if ordered else None)


def check_ids(output: Path, rows: int, ordered: bool) -> Check:
    """OUTPUT holds the integers 0..ROWS-1, one a line (in that order if ORDERED)."""
    import numpy as np
    import pyarrow.csv as pacsv

    if not output.exists() or output.stat().st_size == 0:
        return Check(0, rows, 0, 0, False if ordered else None)
    ids = pacsv.read_csv(output, read_options=pacsv.ReadOptions(autogenerate_column_names=True))
    values = ids.column(0).to_numpy()
    unique = np.unique(values)
    inside = unique[(unique >= 0) & (unique < rows)]
    return Check(items=len(values), missing=rows - len(inside),
                 duplicated=len(values) - len(unique), unexpected=len(unique) - len(inside),
                 in_order=bool(np.array_equal(values, np.arange(rows))) if ordered else None)


# -- measuring a command's process tree ----------------------------------------------------------


class TreeSampler(threading.Thread):
    """Samples the process tree under ``pid`` until stopped: peak summed RSS, every process
    seen (so that survivors can be found), and the CPU seconds each one had used."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.seen: dict[int, psutil.Process] = {pid: self.root}
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.peak_pss = 0
        self._done = threading.Event()

    def run(self) -> None:
        samples = 0
        while not self._done.is_set():
            if samples % RESCAN_EVERY == 0:
                self._find_new()
            self._sample()
            # every time, as RSS: a short run sampled less often would have its peak missed
            self._sample_pss()
            samples += 1
            self._done.wait(SAMPLE_EVERY)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def _find_new(self) -> None:
        try:
            for child in self.root.children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def _sample(self) -> None:
        total = 0
        for pid, process in list(self.seen.items()):
            try:
                with process.oneshot():
                    total += process.memory_info().rss
                    times = process.cpu_times()
                    self.cpu[pid] = times.user + times.system
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, total)

    def _sample_pss(self) -> None:
        total = 0
        for process in list(self.seen.values()):
            try:
                total += process.memory_full_info().pss
            except (psutil.Error, AttributeError):
                continue
        self.peak_pss = max(self.peak_pss, total)

    def alive(self) -> list[psutil.Process]:
        return [p for p in self.seen.values() if p.is_running() and p.status() != "zombie"]


@dataclass
class TreeRun(Timing):
    """One command's run: benchlib's timing plus what the whole process tree did."""

    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0
    returncode: int | None = None
    hung: bool = False  # still running at the hang limit, then killed
    killed: bool = False  # the benchmark killed the command on purpose (kill_when)
    left_running: list[str] = field(default_factory=list)  # its processes alive after it
    check: Check | None = None

    @property
    def outcome(self) -> str:
        if self.hung:
            return f"hung (killed at {HANG_LIMIT:.0f} s)"
        if self.killed:
            return "killed by the benchmark"
        return f"exit {self.returncode}"


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_tree(command: Sequence[str], stderr: Path, hang_limit: float = HANG_LIMIT,
             kill_when: Callable[[], bool] | None = None) -> TreeRun:
    """Run COMMAND (stderr into STDERR), sampling its process tree; kill it when KILL_WHEN
    says so (SIGKILL to the command's own process only, as a crash would), or with its
    whole tree at HANG_LIMIT. Processes of it still alive after it ends are named, then
    killed, so that the next command starts on a clean machine."""
    wait_for_quiet()
    busy, children, mine = busy_cpu_seconds(), children_cpu_seconds(), _self_cpu()
    started = time.perf_counter()
    with open(stderr, "wb") as err:
        process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=err)
    sampler = TreeSampler(process.pid)
    sampler.start()
    hung = killed = False
    while process.poll() is None:
        if time.perf_counter() - started > hang_limit:
            hung = True
            for survivor in sampler.alive():
                survivor.kill()
        elif kill_when is not None and not killed and kill_when():
            killed = True
            process.send_signal(signal.SIGKILL)
        time.sleep(SAMPLE_EVERY)
    elapsed = time.perf_counter() - started
    sampler.stop()
    cpu = max(children_cpu_seconds() - children, sum(sampler.cpu.values()))
    busy_after, mine_after = busy_cpu_seconds(), _self_cpu()
    others = 0.0
    if busy is not None and busy_after is not None:
        others = max(0.0, (busy_after - busy) - cpu - (mine_after - mine))
    left = _survivors(sampler)
    return TreeRun(elapsed, others, cpu, peak_rss_mb=sampler.peak_rss / 2**20,
                   peak_pss_mb=sampler.peak_pss / 2**20, returncode=process.returncode, hung=hung, killed=killed, left_running=left)


def _survivors(sampler: TreeSampler) -> list[str]:
    """Names of the tree's processes still alive EXIT_GRACE seconds after it ended (killed
    then)."""
    _, alive = psutil.wait_procs(sampler.alive(), timeout=EXIT_GRACE)
    names = []
    for process in alive:
        try:
            names.append(f"{process.name()} ({process.pid})")
            process.kill()
        except psutil.Error:
            continue
    return names


# -- contenders and their rows -------------------------------------------------------------------


@dataclass
class PeerContender(Contender):
    """A contender whose every run is checked: CHECK reads its output after the run."""

    check: Callable[[], Check]


def engine(name: str, command: Sequence[str], output: Path,
           check: Callable[[Path], Check]) -> PeerContender:
    """Our contender: COMMAND writes into the folder OUTPUT (under OUT), emptied before each
    run; CHECK reads the output file in it."""
    return PeerContender(name, lambda: fresh_dir(str(output.relative_to(DATA / "out"))),
                         command, lambda: check(output / "parallel_run_step.txt"))


def one_file(name: str, command: Sequence[str], output: Path,
             check: Callable[[Path], Check]) -> PeerContender:
    """A contender whose COMMAND writes the file OUTPUT (removed before each run)."""
    return PeerContender(name, lambda: output.unlink(missing_ok=True), command,
                         lambda: check(output))


def peer(name: str, tool: str, kind: str, script: Path | str, source: Path, output: Path,
         options: Sequence[str], check: Callable[[Path], Check]) -> PeerContender:
    """A peer's contender (see :func:`peer_command`), CHECK reading its OUTPUT file."""
    return one_file(name, peer_command(tool, kind, script, source, output, *options), output,
                    check)


def measure(contender: PeerContender) -> TreeRun:
    """One checked run of CONTENDER, with the load average at its start."""
    load = load_average()
    OUT.mkdir(parents=True, exist_ok=True)
    run = run_tree(contender.command, OUT / f"{slug(contender.name)}.stderr")
    run.check = contender.check()
    left = f"; left running: {', '.join(run.left_running)}" if run.left_running else ""
    print(f"    {contender.name}: {load} at start; peak RSS {run.peak_rss_mb:,.0f} MB, "
          f"PSS {run.peak_pss_mb:,.0f} MB; "
          f"{run.outcome}; correct: {run.check.describe()}{left}", flush=True)
    if run.returncode != 0:
        print(f"    (stderr in {OUT / slug(contender.name)}.stderr)", flush=True)
    return run


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


@dataclass
class Row:
    """One contender's line in a workload's table (medians of its runs)."""

    workload: str
    contender: str
    seconds: float
    cpu: float
    peak_rss_mb: float
    vs_ours: float  # its time / ours: above 1, we are faster
    correct: str
    runs: list[float] = field(default_factory=list)  # wall seconds of each kept run
    peak_pss_mb: float = 0.0


def compare(workload: str, contenders: Sequence[PeerContender], ours: str,
            repeats: int = REPEATS) -> list[Row]:
    """Run the contenders in turns; a row each, its time against OURS's."""
    print(f"{workload}: {len(contenders)} contenders, {repeats} alternating rounds; "
          f"{load_average()}", flush=True)
    runs = alternate_measured(contenders, repeats, measure)
    base = median([r.seconds for r in runs[ours]])
    rows = []
    for contender in contenders:
        kept = runs[contender.name]
        wall = median([r.seconds for r in kept])
        wrong = [r.check.describe() for r in kept if r.check is not None and not r.check.ok]
        correct = wrong[0] if wrong else next(r.check for r in kept if r.check).describe()
        rows.append(Row(workload, contender.name, wall, median([r.cpu for r in kept]),
                        max(r.peak_rss_mb for r in kept), wall / base, correct,
                        [round(r.seconds, 2) for r in kept], max(r.peak_pss_mb for r in kept)))
    return rows


ROW_COLUMNS = ("workload", "contender", "wall s (median)", "CPU-s", "peak RSS MB",
               "peak PSS MB", "time / ours", "correct")


def markdown(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def rows_table(rows: Iterable[Row]) -> str:
    return markdown(ROW_COLUMNS, ((r.workload, r.contender, f"{r.seconds:.2f}", f"{r.cpu:.2f}",
                                  f"{r.peak_rss_mb:,.0f}", f"{r.peak_pss_mb:,.0f}",
                                  f"{r.vs_ours:.2f}", r.correct)
                                 for r in rows))


@dataclass
class Section:
    """One workload's part of the report: its table, then what it found."""

    title: str
    table: str
    notes: list[str]

    def render(self) -> str:
        return "\n".join([f"### {self.title}", "", self.table, "", *self.notes])


def speed_verdict(rows: Sequence[Row], ours: str, target: float) -> str:
    """How much faster ours is than the fastest peer, against TARGET."""
    mine = next(r for r in rows if r.contender == ours)
    fastest = min((r for r in rows if r.contender != ours), key=lambda r: r.seconds)
    factor = fastest.seconds / mine.seconds
    verdict = "pass" if factor >= target else "MISS"
    return (f"ours {mine.seconds:.2f} s, the fastest peer ({fastest.contender}) "
            f"{fastest.seconds:.2f} s: ours {factor:.2f}x faster (target >= {target}x): "
            f"{verdict}")
