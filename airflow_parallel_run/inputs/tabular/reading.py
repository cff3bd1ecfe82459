"""What a worker asks of a piece: its rows as a DataFrame, or, when they cannot be read,
how many rows it holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .partitions import read_partition
from .pieces import TablePiece
from .registry import table_format

if TYPE_CHECKING:
    import pandas as pd


def read_piece(piece: TablePiece, options: dict[str, Any],
               storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """The rows of one piece as a DataFrame, with the file's column names and types.

    Reads only the piece's byte range (plus its file's header line and the end of its last
    row) or row groups. Columns of a file without a header are numbered 0, 1, ...
    Raises :class:`TableReadError` naming the file and range when the rows cannot be read;
    an empty file and a file with a header but no rows are errors too.
    """
    storage_options = storage_options or {}
    fmt = table_format(piece.format)
    if piece.partition_key_value is None:
        return fmt.to_pandas(fmt.read_table(piece, options, storage_options), options)
    return read_partition(fmt, piece, options, storage_options)


def count_rows_estimate(piece: TablePiece, options: dict[str, Any],
                        storage_options: dict[str, Any] | None = None) -> int:
    """How many rows a piece holds, for counting failed items when :func:`read_piece` fails.

    Parquet: from the footer. CSV: the rows that start in the piece (a quoted line break is
    part of its row). JSON lines: the line breaks in the piece's bytes (a blank line counts
    one too many). 0 when the file cannot be read.
    """
    if piece.rows is not None:
        return piece.rows
    try:
        return table_format(piece.format).count_rows(piece, options, storage_options or {})
    except Exception:  # noqa: BLE001 - an estimate: what cannot be read counts nothing
        return 0
