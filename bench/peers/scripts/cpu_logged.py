"""Entry script of the kill-and-resume workload: bench/scripts/cpu_work.py's run(), which
then appends the names of the files it finished to the file ``$PEERS_WORK_LOG``, so the
benchmark can count the work a killed and restarted job did twice."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))

from cpu_work import run as cpu_run  # noqa: E402


def run(mini_batch):
    results = cpu_run(mini_batch)
    # One write in append mode: lines of two processes never interleave.
    with open(os.environ["PEERS_WORK_LOG"], "a", encoding="utf-8") as log:
        log.write("".join(f"{os.path.basename(path)}\n" for path in mini_batch))
    return results
