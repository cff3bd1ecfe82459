"""`make demo` without Airflow: a few hundred small files through `parallel-run`."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "demo-output" / "texts"
OUTPUT = ROOT / "demo-output" / "word_count"


def main() -> int:
    DATA.mkdir(parents=True, exist_ok=True)
    for i in range(300):
        (DATA / f"text{i:03d}.txt").write_text(" ".join(["word"] * (i % 17 + 1)) + "\n")
    command = [sys.executable, "-m", "airflow_parallel_run",
               str(ROOT / "examples" / "word_count" / "count_words.py"),
               "--input", str(DATA), "--output", str(OUTPUT),
               "--mini-batch-size", "20", "--process-count-per-node", "2"]
    print("$", " ".join(command[2:]), flush=True)
    code = subprocess.call(command)
    result = OUTPUT / "parallel_run_step.txt"
    if result.exists():
        print(f"\noutput: {result}")
        print("first lines:")
        for line in result.read_text().splitlines()[:5]:
            print("  ", line)
        print(f"logs: {OUTPUT / 'logs'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
