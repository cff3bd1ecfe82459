"""airflow-parallel-run: Azure ML's ParallelRunStep for Apache Airflow 3.

The engine (config, inputs, planning, nodes, reducer) imports no Airflow; the Airflow layer
(``airflow_parallel_run.airflow``) is loaded only when its names are asked for.
"""

from __future__ import annotations

from typing import Any

from .config import ParallelRunConfig
from .entry_script import EntryScript
from .errors import ConfigError, EntryScriptError, InputError, ParallelRunError
from .inputs import FileDataset, SideInput, TabularDataset

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "EntryScript",
    "EntryScriptError",
    "FileDataset",
    "InputError",
    "ParallelRunConfig",
    "ParallelRunError",
    "SideInput",
    "TabularDataset",
    "run_job",
]


def __getattr__(name: str) -> Any:
    if name == "run_job":
        from .engine.job import run_job

        return run_job
    if name == "ParallelRunOperator":  # imports Airflow, so only when asked for
        from .airflow import ParallelRunOperator

        return ParallelRunOperator
    raise AttributeError(f"module 'airflow_parallel_run' has no attribute {name!r}")
