"""W2: the 400 MB CSV, 10 MB batches, 2 processes or actors (see tables.py).

    .venv/bin/python bench/peers/w2_csv.py
"""

from __future__ import annotations

from tables import compare

TARGET = 1.2


def main():
    return compare("csv", "W2: 400 MB CSV (8M rows), 10 MB batches, 2 processes", TARGET)


if __name__ == "__main__":
    print(main().render())
