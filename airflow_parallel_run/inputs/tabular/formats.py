"""The interface every table format implements, in the spirit of ``pyarrow.dataset.FileFormat``.

A format splits a file into pieces at plan time, reads a piece into an Arrow table in the
worker, and counts a piece's rows when reading it failed. What is common to all formats -
opening the file, telling a store that did not answer from bad data, checking a file's
columns against the input's first file - is done here, once.
"""

from __future__ import annotations

import codecs
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import InputError
from ...storage import describe_storage_error
from .byte_ranges import TrackedFile, open_file
from .pieces import TablePiece, TableReadError, first_line, short_names

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ..files import InputItem

# Where the planner tells a user what they should know ("file X is compressed: not split").
Note = Callable[[str], None]

# Column names of reference files, kept for the life of the process: every piece of a job
# compares against the same file. Keyed by path, format and the options that name columns.
_REFERENCE_COLUMNS: dict[tuple[str, ...], list[str] | None] = {}
_NAMING_OPTIONS = ("header", "separator", "quotechar", "encoding")


class TableFormat(ABC):
    """How one file format is planned and read. One instance per format, kept by the registry.

    ``options`` are the dataset's reading options (:attr:`TabularDataset.options`),
    ``storage_options`` what fsspec needs to reach a store.
    """

    name: ClassVar[str]
    # Whether a file must have the columns of the input's first file.
    checks_columns: ClassVar[bool] = True

    @abstractmethod
    def split(self, item: InputItem, target: int, options: dict[str, Any],
              storage_options: dict[str, Any], note: Note) -> Iterator[TablePiece]:
        """The file's pieces of about ``target`` bytes, in file order, reading no rows."""

    @abstractmethod
    def is_whole(self, piece: TablePiece) -> bool:
        """Whether the piece is its whole file."""

    @abstractmethod
    def where(self, piece: TablePiece) -> str:
        """The piece's place in its file, for messages."""

    @abstractmethod
    def read(self, piece: TablePiece, handle: TrackedFile, options: dict[str, Any],
             columns: list[str] | None) -> pa.Table:
        """The piece's rows from the open file (only ``columns`` when given).

        Raises :class:`TableReadError` for what the format itself finds wrong; any other
        error is classified by :meth:`read_table`.
        """

    @abstractmethod
    def count_rows(self, piece: TablePiece, options: dict[str, Any],
                   storage_options: dict[str, Any]) -> int:
        """How many rows the piece holds, without parsing them (may raise)."""

    def column_names(self, path: str, options: dict[str, Any],
                     storage_options: dict[str, Any]) -> list[str] | None:
        """The columns of a file as the reader names them, or None when the format has no
        fixed columns."""
        return None

    def key_column(self, key: str, options: dict[str, Any]) -> str:
        """The column the reader gives a partition key."""
        return str(key)

    def partition_part_bytes(self, scan_bytes: int) -> int:
        """The target size of the parts the partition planner reads key columns from."""
        return scan_bytes

    def to_pandas(self, table: pa.Table, options: dict[str, Any]) -> pd.DataFrame:
        """The rows as the user's ``run()`` gets them."""
        return table.to_pandas(split_blocks=True, self_destruct=True)

    def read_table(self, piece: TablePiece, options: dict[str, Any],
                   storage_options: dict[str, Any], columns: list[str] | None = None
                   ) -> pa.Table:
        """The piece as an Arrow table (only ``columns`` when given), or a TableReadError."""
        import pyarrow as pa

        handle = None
        try:
            with open_file(piece.path, storage_options) as handle:
                table = self.read(piece, handle, options, columns)
        except TableReadError:
            raise
        except Exception as exc:
            if handle is None or handle.failed:  # the store did not answer, or the file is gone
                raise TableReadError(
                    piece.path, piece.where, describe_storage_error(piece.path, exc),
                    retryable=not isinstance(exc, FileNotFoundError | PermissionError)) from None
            if isinstance(exc, pa.ArrowException | OSError | ValueError | EOFError):  # bad data
                raise TableReadError(piece.path, piece.where, first_line(exc)) from None
            raise
        if columns is None and piece.columns_from:
            self._check_columns(piece, piece.columns_from, table.column_names, options,
                                storage_options)
        return table

    def reference_columns(self, path: str, options: dict[str, Any],
                          storage_options: dict[str, Any]) -> list[str] | None:
        """:meth:`column_names`, remembered; None also when the file cannot be read."""
        key = (path, self.name, *(repr(options.get(k)) for k in _NAMING_OPTIONS))
        if key not in _REFERENCE_COLUMNS:
            try:
                names = self.column_names(path, options, storage_options)
            except Exception:  # noqa: BLE001 - an unreadable file fails in its own pieces
                names = None
            if len(_REFERENCE_COLUMNS) >= 64:  # a long-lived process sees many jobs
                _REFERENCE_COLUMNS.clear()
            _REFERENCE_COLUMNS[key] = names
        return _REFERENCE_COLUMNS[key]

    def _check_columns(self, piece: TablePiece, reference_path: str, columns: list[str],
                       options: dict[str, Any], storage_options: dict[str, Any]) -> None:
        reference = self.reference_columns(reference_path, options, storage_options)
        if reference is not None and columns and columns != reference:
            raise TableReadError(piece.path, piece.where,
                                 f"its columns {short_names(columns)} differ from those of "
                                 f"{reference_path}: {short_names(reference)}")


def codec_name(encoding: str, what: str) -> str:
    """The codec's canonical name (``"UTF8"`` -> ``"utf-8"``), or an InputError naming ``what``."""
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise InputError(f"{what}: encoding = {encoding!r}: not a known encoding") from None


def undecodable(data: bytes, encoding: str, offset: int, column: str | None = None) -> str:
    """Where ``data`` (which starts at byte ``offset`` of its file) stops decoding."""
    where = "" if column is None else f" (column {column!r})"
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        return f"bytes that do not decode as {encoding} at byte {offset + exc.start}{where}"
    return f"bytes that do not decode as {encoding}{where}"
