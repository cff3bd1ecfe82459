"""Every peer workload in one run, and the report (``make bench-peers``).

    .venv/bin/python bench/peers/run_peers.py [w1 w2 w3 w4 w5 w6]

Prints each workload's measurements as they come, then the whole report (Markdown), which
is also written to ``/tmp/bench-data/out/peers/report.md``. Takes about 25 minutes on a
2-core machine (W5 alone waits 5 minutes for a contender that hangs); on a busy machine
disturbed measurements are taken again, which adds to that.
"""

from __future__ import annotations

import sys
import time

import peerlib  # first: it puts bench/ on sys.path
import w1_tiny_files
import w2_csv
import w3_parquet
import w4_cpu_scaling
import w5_faults
import w6_kill_resume
from benchlib import machine

WORKLOADS = {"w1": w1_tiny_files.main, "w2": w2_csv.main, "w3": w3_parquet.main,
             "w4": w4_cpu_scaling.main, "w5": w5_faults.main, "w6": w6_kill_resume.main}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    command = " ".join([".venv/bin/python bench/peers/run_peers.py", *names])
    header = f"{machine()}; {peerlib.peer_versions()}; command: `{command}`"
    print(header + "\n", flush=True)
    sections = []
    for name in names or list(WORKLOADS):
        sections.append(WORKLOADS[name]())
        print("\n" + sections[-1].render() + "\n", flush=True)
    report = "\n\n".join([header, *(s.render() for s in sections),
                          f"all workloads: {time.monotonic() - started:.0f} s"])
    peerlib.OUT.mkdir(parents=True, exist_ok=True)
    (peerlib.OUT / "report.md").write_text(report + "\n")
    print("\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
