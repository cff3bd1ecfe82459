"""The table formats by name: which :class:`~.formats.TableFormat` plans and reads a piece.

A format's module is imported the first time its name is asked for, so a job over Parquet
files never loads the CSV reader; after that a lookup is a dictionary access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .formats import TableFormat

# Format name -> the module whose ``FORMAT`` reads it, in the order messages list them.
_MODULES = {"csv": "delimited", "parquet": "parquet", "jsonl": "jsonl"}
FORMATS = tuple(_MODULES)

_loaded: dict[str, TableFormat] = {}


def table_format(name: str) -> TableFormat:
    """The format called ``name`` (one of :data:`FORMATS`); KeyError for any other name."""
    found = _loaded.get(name)
    if found is None:
        module = importlib.import_module(f"{__package__}.{_MODULES[name]}")
        found = _loaded[name] = module.FORMAT
    return found
