"""``partition_keys``: one mini-batch per distinct combination of key column values.

The planner reads only the key columns, part by part (Parquet: row group by row group;
CSV and JSON lines: byte ranges of ``scan_bytes``), and counts each combination's rows. A
combination's piece lists the parts that hold it; its worker reads those parts and keeps
the rows with its values::

    planner  parts --(key columns only)--> combination -> TablePiece(key values, parts, rows)
    worker   each part --(all columns)--> rows with the key values --> one DataFrame

Key values travel through JSON (dates and times as ISO text) and are cast back to the
column's type before comparing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import InputError
from .formats import Note, TableFormat
from .pieces import TablePiece, TableReadError, short_names
from .registry import table_format

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .dataset import TabularDataset

# Notes keep the name they always had: one logger for the whole package.
_log = logging.getLogger(__package__)

# Parts the partition planner reads key columns from (CSV and JSON lines; Parquet goes by
# row group), and so the most a worker reads at once for a partition mini-batch.
PARTITION_SCAN_BYTES = 32 * 1024**2
_ROW = "__parallel_run_row"  # a column of row numbers, beside the key columns


def partition_pieces(dataset: TabularDataset, keys: tuple[str, ...] | list[str], *,
                     scan_bytes: int = PARTITION_SCAN_BYTES,
                     note: Note | None = None) -> Iterator[TablePiece]:
    """One piece per distinct combination of the ``keys`` columns over all files, in the
    order the combinations first appear (see :meth:`TabularDataset.iter_partition_pieces`)."""
    keys = tuple(keys)
    if not keys:
        raise InputError("partition_keys: give at least one column")
    note = note or _log.info
    fmt = table_format(dataset.format)
    columns = [fmt.key_column(key, dataset.options) for key in keys]
    found = _Combinations(keys, columns)
    known: list[str] | None = None
    for part in dataset.iter_pieces(fmt.partition_part_bytes(scan_bytes), note=note):
        if known is None:
            known = fmt.reference_columns(part.path, dataset.options, dataset.storage_options)
            _check_keys(keys, columns, known, part.path)
        try:
            table = fmt.read_table(part, dataset.options, dataset.storage_options, columns)
        except TableReadError as exc:
            if exc.retryable:
                raise
            note(f"{exc}: these rows cannot be grouped by {list(keys)}; they are a "
                 "mini-batch of their own, which will fail")
            found.add_unreadable(part)
            continue
        found.add(part, table)
    yield from found.pieces()


def _check_keys(keys: tuple[str, ...], columns: list[str], known: list[str] | None,
                path: str) -> None:
    if not known:  # a format without fixed columns, or a file that cannot be read
        return
    missing = [k for k, c in zip(keys, columns, strict=True) if c not in known]
    if missing:
        raise InputError(f"partition_keys: {missing} not among the columns of {path}: "
                         f"{short_names(known)}")


@dataclass
class _Combination:
    """The rows with one combination of key values, as found so far."""

    value: dict[str, Any]
    parts: list[TablePiece] = field(default_factory=list)
    rows: int = 0

    def piece(self) -> TablePiece:
        if len(self.parts) == 1:
            return dataclasses.replace(self.parts[0], rows=self.rows, parts=None,
                                       partition_key_value=self.value)
        first = self.parts[0]
        return TablePiece(first.path, first.format, rows=self.rows,
                          partition_key_value=self.value, parts=self.parts)


class _Combinations:
    """Key combinations and unreadable parts, in the order they first appear."""

    def __init__(self, keys: tuple[str, ...], columns: list[str]) -> None:
        self.keys, self.columns = keys, columns
        self.entries: list[_Combination | TablePiece] = []
        self.by_value: dict[str, _Combination] = {}

    def add_unreadable(self, part: TablePiece) -> None:
        self.entries.append(part)

    def add(self, part: TablePiece, table: pa.Table) -> None:
        """Count the rows of each combination in ``part``, whose key columns ``table`` holds."""
        import pyarrow as pa

        # group_by's order of groups is not their first appearance (keys with nulls come out
        # of order): each group's first row number puts them back in it.
        rows = pa.array(range(table.num_rows), type=pa.int64())
        counts = (table.select(self.columns).append_column(_ROW, rows)
                  .group_by(self.columns, use_threads=False)
                  .aggregate([([], "count_all"), (_ROW, "min")])
                  .sort_by(f"{_ROW}_min"))
        for row in counts.to_pylist():
            value = {key: _json_value(row[column])
                     for key, column in zip(self.keys, self.columns, strict=True)}
            marker = json.dumps(list(value.values()))
            combination = self.by_value.get(marker)
            if combination is None:
                combination = self.by_value[marker] = _Combination(value)
                self.entries.append(combination)
            combination.parts.append(part)
            combination.rows += row["count_all"]

    def pieces(self) -> Iterator[TablePiece]:
        for entry in self.entries:
            yield entry.piece() if isinstance(entry, _Combination) else entry


def read_partition(fmt: TableFormat, piece: TablePiece, options: dict[str, Any],
                   storage_options: dict[str, Any]) -> pd.DataFrame:
    """The rows of a partition piece: those of each of its parts that hold its key values."""
    key_value = piece.partition_key_value or {}
    names = {key: fmt.key_column(key, options) for key in key_value}
    frames = [
        fmt.to_pandas(_select(fmt.read_table(part, options, storage_options), key_value, names),
                      options)
        for part in piece.parts or [piece]
    ]
    if len(frames) == 1:
        return frames[0]
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def _select(table: pa.Table, key_value: dict[str, Any], names: dict[str, str]) -> pa.Table:
    """The rows of ``table`` whose key columns hold ``key_value``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = None
    for key, value in key_value.items():
        name = names[key]
        if name not in table.column_names:  # a JSON field no record of this part has
            hit = pa.repeat(pa.scalar(value is None), table.num_rows)
        elif value is None:
            hit = pc.is_null(table[name])
        elif isinstance(value, float) and math.isnan(value):
            hit = pc.is_nan(table[name])
        else:
            hit = pc.equal(table[name], _scalar(value, table[name].type))
        mask = hit if mask is None else pc.and_(mask, hit)
    return table.filter(mask)


def _scalar(value: Any, kind: pa.DataType) -> pa.Scalar:
    # Key values went through JSON (dates and times as ISO text): back to the column's type.
    import pyarrow as pa

    scalar = pa.scalar(value)
    try:
        return scalar.cast(kind)
    except (pa.ArrowException, ValueError):
        return scalar


def _json_value(value: Any) -> Any:
    """A key value as JSON can carry it: dates, times and decimals become their text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
