"""Storage credentials from Airflow connections: ``conn_id=`` on datasets and side inputs.

A connection's extras become the fsspec ``storage_options`` of the object that names it, at
run time, inside the task that reads the data. The options are never logged and never enter a
descriptor or an XCom (``to_dict()`` of datasets leaves them out); their secret values are
handed to the engine, which masks them in every log the job writes.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol, TypeVar


class _Credentialed(Protocol):
    """A dataset or a side input: it may name a connection, and takes fsspec options."""

    conn_id: str | None
    storage_options: dict[str, Any]


T = TypeVar("T", bound=_Credentialed)

# Option names whose values are masked in logs (as Airflow's own masker decides by name).
SENSITIVE_NAMES = ("secret", "password", "passwd", "token", "key", "credential", "private",
                   "auth", "sas", "signature", "connection_string")


def storage_options(conn_id: str) -> dict[str, Any]:
    """The connection's extras as fsspec options (``{"storage_options": {...}}`` or the extras)."""
    from airflow.sdk import Connection

    extras = Connection.get(conn_id).extra_dejson or {}
    nested = extras.get("storage_options")
    return dict(nested) if isinstance(nested, dict) else dict(extras)


def with_credentials(source: T) -> T:
    """A copy of a dataset or side input with its connection's options filled in.

    Options given in the DAG (``storage_options=``) win over the connection's.
    """
    conn_id = getattr(source, "conn_id", None)
    if not conn_id:
        return source
    filled = copy.copy(source)
    filled.storage_options = {**storage_options(conn_id), **(source.storage_options or {})}
    return filled


def secret_values(options: Any, name: str = "") -> list[str]:
    """The string values of ``options`` (nested) whose option name looks sensitive."""
    if isinstance(options, dict):
        return [v for key, value in options.items() for v in secret_values(value, str(key))]
    if isinstance(options, list | tuple):
        return [v for value in options for v in secret_values(value, name)]
    if isinstance(options, str) and any(word in name.lower() for word in SENSITIVE_NAMES):
        return [options]
    return []
