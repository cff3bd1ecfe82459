"""Loan applications as CSV files, made once: the input of the tabular_scoring DAG.

Four files of 5,000 rows (id, income, debt, age, years_employed), drawn from a fixed seed, so
every machine makes the same table. Run as a script (``python make_table.py FOLDER``) or
called by the DAG's first task.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pandas as pd

FILES, ROWS = 4, 5000


def make_table(target: str) -> str:
    """Write ``applications_N.csv`` under ``target`` unless they are there already."""
    if os.path.exists(os.path.join(target, f"applications_{FILES - 1}.csv")):
        return target
    building = f"{target}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    rng = np.random.default_rng(20240601)
    for part in range(FILES):
        ids = np.arange(part * ROWS, (part + 1) * ROWS) + 100000
        table = pd.DataFrame({
            "id": ids,
            "income": rng.normal(52000, 18000, ROWS).clip(8000).round(0).astype(int),
            "debt": rng.gamma(2.0, 7000, ROWS).round(0).astype(int),
            "age": rng.integers(19, 80, ROWS),
            "years_employed": rng.integers(0, 35, ROWS),
        })
        table.to_csv(os.path.join(building, f"applications_{part}.csv"), index=False)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    os.rename(building, target)
    return target


if __name__ == "__main__":
    print(make_table(sys.argv[1]))
