"""W6, kill and resume: the driver SIGKILLed half-way, then the same command again.

5,000 files x about 2 ms of CPU (scripts/cpu_logged.py: cpu_work.py's run(), which also
logs each finished file's name), 10 per batch, 2 processes or actors. Run 1 is SIGKILLed
(its own process only, as a crash or an OOM kill would) once 2,500 items are logged as
done; what of it is still alive 2 s later is named, then killed. Run 2 is the same command
into the same output. Reported: how long each run took, the items run 2 did again (logged
twice or more), and what the final output holds (every item once?).

    .venv/bin/python bench/peers/w6_kill_resume.py
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import peerlib  # first: it puts bench/ on sys.path
from benchlib import engine_command, file_set, fresh_dir, warm
from peerlib import OUT, PEER_SCRIPTS, Check, Section, TreeRun, check_lines, peer_command, run_tree
from w4_cpu_scaling import expected_lines

FILES = 5_000
BATCH = 10
SCRIPT = PEER_SCRIPTS / "cpu_logged.py"
LINE = len("0000000.txt\n")  # one work-log line


@dataclass
class ResumeRow:
    contender: str
    first: TreeRun
    second: TreeRun
    done_before_kill: int
    redone: int
    check: Check

    def cells(self) -> list[str]:
        left = ", ".join(self.first.left_running) or "none"
        return [self.contender, f"{self.first.seconds:.1f}", f"{self.done_before_kill:,}", left,
                f"{self.second.seconds:.1f}", self.second.outcome, f"{self.redone:,}",
                f"{self.check.duplicated:,}", self.check.describe()]


COLUMNS = ("contender", "run 1 s (killed)", "items done by then", "processes left after kill",
           "run 2 s", "run 2", "items done again", "duplicated lines", "final output correct")


def logged(work_log: Path) -> int:
    return work_log.stat().st_size // LINE if work_log.exists() else 0


def kill_and_resume(name: str, command: list[str], output: Path, work_log: Path,
                    expected: list[bytes], ordered: bool) -> ResumeRow:
    print(f"W6 kill and resume: {name}; {peerlib.load_average()}", flush=True)
    stderr = OUT / f"w6-{peerlib.slug(name)}"
    first = run_tree(command, Path(f"{stderr}-1.stderr"),
                     kill_when=lambda: logged(work_log) >= FILES // 2)
    before = logged(work_log)
    second = run_tree(command, Path(f"{stderr}-2.stderr"))
    row = ResumeRow(name, first, second, before, logged(work_log) - FILES,
                    check_lines(output, expected, ordered))
    print("    " + " | ".join(row.cells()), flush=True)
    return row


def main() -> Section:
    folder = file_set("cpu-5k", FILES, lambda i: str(i).encode())
    warm(folder)
    print("  computing the expected output (about 10 s) ...", flush=True)
    expected = expected_lines(folder)
    rows = []
    for name, tool in (("ours (parallel-run)", None), ("Ray Data (2 actors)", "ray"),
                       ("Dask bag (2 processes)", "dask")):
        work_log = OUT / f"w6-{tool or 'ours'}.log"
        work_log.unlink(missing_ok=True)
        env = (f"PEERS_WORK_LOG={work_log}",)
        if tool is None:
            output = fresh_dir("peers/w6-ours")
            command = ["env", *env, *engine_command(str(SCRIPT), folder, output, BATCH, 2)]
            rows.append(kill_and_resume(name, command, output / "parallel_run_step.txt",
                                        work_log, expected, True))
            continue
        output = OUT / f"w6-{tool}.txt"
        output.unlink(missing_ok=True)
        command = peer_command(tool, "files", SCRIPT, folder, output, "--batch", str(BATCH),
                               f"--{'actors' if tool == 'ray' else 'workers'}", "2", env=env)
        rows.append(kill_and_resume(name, command, output, work_log, expected, tool == "dask"))
    return Section(f"W6: kill at 50% and run again, {FILES:,} files x ~2 ms",
                   peerlib.markdown(COLUMNS, (row.cells() for row in rows)), [])


if __name__ == "__main__":
    print(main().render())
