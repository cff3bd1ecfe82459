"""Inputs: datasets are descriptions (paths, byte ranges); only workers read their data."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"FileDataset": ".files", "InputItem": ".files", "SideInput": ".side_inputs",
          "TablePiece": ".tabular", "TabularDataset": ".tabular"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:  # tabular (and what it needs) only when asked for
    if name not in _WHERE:
        raise AttributeError(f"module 'airflow_parallel_run.inputs' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value
