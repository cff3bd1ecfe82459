"""airflow-parallel-run: Azure ML's ParallelRunStep for Apache Airflow 3.

Data flows one way, each stage handing the next small typed records::

    config.ParallelRunConfig --> plan.py (mini-batch descriptors in the output location)
      --> engine/work_queue.py (what runs next) --> engine/pool.py (worker processes)
      --> results.py (one record per mini-batch) + events.py (one per try and error)
      --> reduce.py (judge, assemble the output) --> report.py (logs/job_report.html)

``engine/job.py``'s ``Job`` is the one entry point to those steps, for ``parallel-run``
(cli.py) and for the three Airflow tasks (airflow/tasks.py).

The engine (config, inputs, planning, nodes, reducer) imports no Airflow; the Airflow layer
(``airflow_parallel_run.airflow``) is loaded only when its names are asked for. Every public
name is loaded when first used, so that a worker process or ``parallel-run`` starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_WHERE = {
    "ConfigError": ".errors",
    "EntryScript": ".entry_script",
    "EntryScriptError": ".errors",
    "FileDataset": ".inputs.files",
    "InputError": ".errors",
    "ParallelRunConfig": ".config",
    "ParallelRunError": ".errors",
    "SideInput": ".inputs.side_inputs",
    "TabularDataset": ".inputs.tabular",
    "run_job": ".engine.job",
    "ParallelRunOperator": ".airflow",  # imports Airflow, so only when asked for
}

__all__ = sorted(set(_WHERE) - {"ParallelRunOperator"})


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'airflow_parallel_run' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_WHERE))
