"""W3: the same table as Parquet (row groups of 250,000 rows), 2 processes or actors
(see tables.py).

    .venv/bin/python bench/peers/w3_parquet.py
"""

from __future__ import annotations

from tables import compare


def main():
    return compare("parquet", "W3: the same table as Parquet (250,000-row groups), 2 processes",
                   None)


if __name__ == "__main__":
    print(main().render())
