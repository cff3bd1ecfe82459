"""The Airflow layer: ``ParallelRunOperator``, ``ConfigTemplate`` and the provider's metadata.

This is the only part of the package that imports Airflow. It is a thin adapter: the engine
(``airflow_parallel_run.engine``) plans, runs and reduces; the tasks here only carry small
descriptors between those steps through XCom. Names are loaded on first use, so Airflow's
provider discovery (which imports :mod:`.provider`) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigTemplate", "ParallelRunOperator", "get_provider_info"]


def __getattr__(name: str) -> Any:
    if name == "ParallelRunOperator":
        from .operator import ParallelRunOperator

        return ParallelRunOperator
    if name == "ConfigTemplate":
        from .templated import ConfigTemplate

        return ConfigTemplate
    if name == "get_provider_info":
        from .provider import get_provider_info

        return get_provider_info
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
