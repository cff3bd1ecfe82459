"""TabularDataset: the rows of CSV, Parquet or JSON-lines files are the input items.

The planner cuts every file into pieces of about ``mini_batch_size`` bytes without reading
rows; only the worker that runs a piece reads its bytes::

    planner  files --(sizes, Parquet footers)--> TablePiece(path, start/end | row_groups)
    worker   TablePiece --(its byte range / row groups only)--> pyarrow --> pandas.DataFrame

CSV and JSON lines are cut by byte range. A piece owns the rows that *start* inside its
range: its reader skips the partial line before its first row (unless the piece starts the
file) and reads past ``end`` to finish its last row, so every row lands in exactly one piece,
and a CSV piece after the first gets the header line of its file. Parquet is cut into runs
of consecutive row groups. No piece crosses a file boundary; a file no bigger than the target
is one piece.

A CSV field in quotes may hold a line break, and a cut there would split a row. Before
splitting a CSV file the planner reads its first 256 KB; a file with a quoted line break is
not split (and the planner says so) unless ``multiline=`` decides instead. Pieces of a split
file check themselves: quotes that do not pair up mean a cut inside a quoted field, and the
piece fails with an error naming its file and range instead of returning wrong rows.

Bad input - a row with too many or too few fields, bytes that do not decode, a corrupt
Parquet file, columns that differ from the input's first file, an empty file, a file with a
header but no rows - makes :func:`read_piece` raise :class:`TableReadError`, naming the file
and the byte range or row groups. An empty or header-only file is one piece at plan time,
so that it shows up as a failed mini-batch rather than vanishing without a word.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import InputError, ParallelRunError
from ..storage import describe_storage_error, local_path
from .files import FileDataset, InputItem, is_remote

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

_log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet", "jsonl")
# How much of a CSV file the planner reads to look for quoted line breaks.
SAMPLE_BYTES = 256 * 1024
# Parts the partition planner reads key columns from (CSV and JSON lines; Parquet goes by
# row group), and so the most a worker reads at once for a partition mini-batch.
PARTITION_SCAN_BYTES = 32 * 1024**2
# Read this much past a piece's end at once: its last row almost always ends within it, and
# a remote store then answers one request instead of two.
_OVERREAD = 64 * 1024
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")
# pandas.read_csv's default na_values, so that a piece reads as pandas would read it.
_NA_VALUES = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]

Note = Callable[[str], None]


class TableReadError(ParallelRunError):
    """A piece of a table cannot be read; the message names the file and the range.

    ``retryable`` is True only when reading again could help (the store did not answer);
    bad data (a malformed row, undecodable bytes, a corrupt or empty file, other columns)
    stays bad however often it is read.
    """

    def __init__(self, path: str, where: str, problem: str, *, retryable: bool = False) -> None:
        super().__init__(f"{path} ({where}): {problem}")
        self.path = path
        self.where = where
        self.problem = problem
        self.retryable = retryable

    def __reduce__(self) -> tuple:  # errors cross process boundaries
        return (self.__class__, (self.path, self.where, self.problem),
                {"retryable": self.retryable})


@dataclass(slots=True)
class TablePiece:
    """A mini-batch of rows: small, JSON-able, read only by the worker that runs it.

    ``start``/``end`` is a byte range of a CSV or JSON-lines file (the piece owns the rows
    that start in it; ``end=None`` reads to the end of the file), ``row_groups`` a run of
    a Parquet file's row groups (None: all of them). ``rows`` is set when known without
    reading data. A partition piece (``partition_key_value`` set) holds the rows with those
    key values in its own range, or, when they are spread out, in each of ``parts``.
    ``columns_from`` names the input's first file, whose columns this file's must match.
    """

    path: str
    format: str
    start: int = 0
    end: int | None = None
    row_groups: list[int] | None = None
    rows: int | None = None
    partition_key_value: dict[str, Any] | None = None
    parts: list[TablePiece] | None = None
    columns_from: str | None = None

    @property
    def whole(self) -> bool:
        """True when the piece is the whole file."""
        if self.format == "parquet":
            return self.row_groups is None
        return self.start == 0 and self.end is None

    @property
    def where(self) -> str:
        """The piece's place in its file, for messages: a byte range or row groups."""
        if self.format == "parquet":
            return "all row groups" if self.row_groups is None else _describe_row_groups(
                self.row_groups)
        if self.whole:
            return "bytes 0-end, the whole file"
        return f"bytes {self.start}-{'end' if self.end is None else self.end}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "format": self.format}
        if self.start:
            data["start"] = self.start
        for name in ("end", "row_groups", "rows", "partition_key_value", "columns_from"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.parts is not None:
            data["parts"] = [part.to_dict() for part in self.parts]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TablePiece:
        values = dict(data)
        if values.get("parts") is not None:
            values["parts"] = [cls.from_dict(part) for part in values["parts"]]
        return cls(**values)


@dataclass
class TabularDataset:
    """Rows of CSV, Parquet or JSON-lines files. Build it with one of the ``from_`` methods.

    ``paths`` are files, folders or globs (fsspec URLs welcome): a folder or glob is taken in
    sorted path order, a list in its own order. ``options`` are the format's reading options.
    """

    paths: list[str]
    format: str
    name: str = "input"
    options: dict[str, Any] = field(default_factory=dict)
    storage_options: dict[str, Any] = field(default_factory=dict)
    conn_id: str | None = None

    kind = "tabular"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"TabularDataset format = {self.format!r}: must be one of {FORMATS}")

    @classmethod
    def from_delimited_files(
        cls,
        path: str | os.PathLike | list[str | os.PathLike],
        *,
        separator: str = ",",
        header: bool = True,
        encoding: str = "utf-8",
        quotechar: str | None = '"',
        multiline: bool | None = None,
        name: str | None = None,
        storage_options: dict[str, Any] | None = None,
        conn_id: str | None = None,
    ) -> TabularDataset:
        """CSV (or other delimited) files.

        :param separator: one character, such as ``","``, ``";"`` or ``"\\t"``.
        :param header: whether the first line of every file names the columns; without one,
            columns are numbered 0, 1, ... as pandas does.
        :param encoding: any Python codec; UTF-16 and UTF-32 files are read whole, not split.
        :param quotechar: the quote character, or None when fields are never quoted.
        :param multiline: whether quoted fields may hold line breaks. None (the default):
            the planner looks at the first 256 KB of each file it would split and keeps a
            file with quoted line breaks whole. True: no file is split. False: files are
            split without looking; a piece cut inside a quoted field then fails with an error.
        """
        what = "TabularDataset.from_delimited_files"
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\r\n":
            raise InputError(f"{what}: separator = {separator!r}: must be one character "
                             "other than a line break (',', ';', '\\t', ...)")
        if quotechar is not None and quotechar != "" and (
                not isinstance(quotechar, str) or len(quotechar) != 1
                or quotechar in ("\r", "\n", separator)):
            raise InputError(f"{what}: quotechar = {quotechar!r}: must be one character other "
                             "than the separator and line breaks, or None for no quoting")
        if not isinstance(header, bool):
            raise InputError(f"{what}: header = {header!r}: must be True or False")
        if multiline not in (None, True, False):
            raise InputError(f"{what}: multiline = {multiline!r}: must be None, True or False")
        options = {"separator": separator, "header": header,
                   "encoding": _codec_name(encoding, what), "quotechar": quotechar or None,
                   "multiline": multiline}
        return cls(paths=_path_list(path, what), format="csv", name=name or "input",
                   options=options, storage_options=dict(storage_options or {}), conn_id=conn_id)

    @classmethod
    def from_parquet_files(
        cls,
        path: str | os.PathLike | list[str | os.PathLike],
        *,
        name: str | None = None,
        storage_options: dict[str, Any] | None = None,
        conn_id: str | None = None,
    ) -> TabularDataset:
        """Parquet files; large ones are split into runs of row groups."""
        return cls(paths=_path_list(path, "TabularDataset.from_parquet_files"),
                   format="parquet", name=name or "input",
                   storage_options=dict(storage_options or {}), conn_id=conn_id)

    @classmethod
    def from_json_lines_files(
        cls,
        path: str | os.PathLike | list[str | os.PathLike],
        *,
        encoding: str = "utf-8",
        name: str | None = None,
        storage_options: dict[str, Any] | None = None,
        conn_id: str | None = None,
    ) -> TabularDataset:
        """JSON-lines files: one JSON object per line, its fields are the columns."""
        what = "TabularDataset.from_json_lines_files"
        return cls(paths=_path_list(path, what), format="jsonl", name=name or "input",
                   options={"encoding": _codec_name(encoding, what)},
                   storage_options=dict(storage_options or {}), conn_id=conn_id)

    @classmethod
    def from_dict(cls, data: dict[str, Any],
                  storage_options: dict[str, Any] | None = None) -> TabularDataset:
        return cls(paths=list(data["paths"]), format=data["format"],
                   name=data.get("name", "input"), options=dict(data.get("options") or {}),
                   storage_options=dict(storage_options or {}), conn_id=data.get("conn_id"))

    def to_dict(self) -> dict[str, Any]:
        # storage_options may hold secrets: they are not part of a descriptor.
        return {"kind": self.kind, "format": self.format, "paths": list(self.paths),
                "name": self.name, "options": dict(self.options), "conn_id": self.conn_id}

    @property
    def remote(self) -> bool:
        return any(is_remote(p) for p in self.paths)

    def iter_items(self) -> Iterator[InputItem]:
        """Every file, in input order, streamed (as :meth:`FileDataset.iter_items`)."""
        return FileDataset(self.paths, storage_options=self.storage_options).iter_items()

    def iter_pieces(self, target_bytes: int, *, note: Note | None = None) -> Iterator[TablePiece]:
        """Pieces of about ``target_bytes`` bytes each, in input order.

        Reads no rows: file sizes and Parquet footers only, plus the first 256 KB of each
        CSV file it would split, to look for quoted line breaks. What a user should know
        ("file X has quoted line breaks: not split") goes to ``note`` (default: this
        module's logger, INFO).
        """
        if isinstance(target_bytes, bool) or not isinstance(target_bytes, int) or target_bytes < 1:
            raise ValueError(f"target_bytes = {target_bytes!r}: must be an int >= 1")
        note = note or _log.info
        reference = None
        for item in self.iter_items():
            if reference is None and item.size > 0:
                reference = item.path
            if self.format == "parquet":
                pieces = self._parquet_pieces(item, target_bytes, note)
            else:
                pieces = self._text_pieces(item, target_bytes, note)
            for piece in pieces:
                if self.format != "jsonl" and reference != item.path:
                    piece.columns_from = reference
                yield piece

    def iter_partition_pieces(self, keys: tuple[str, ...] | list[str], *,
                              scan_bytes: int = PARTITION_SCAN_BYTES,
                              note: Note | None = None) -> Iterator[TablePiece]:
        """One piece per distinct combination of the ``keys`` columns over all files.

        Pieces come in the order their combination first appears. The planner reads only the
        key columns: Parquet row group by row group, CSV and JSON lines in parts of
        ``scan_bytes`` (their bytes must be scanned, but only key columns are kept). Each
        piece lists the parts that hold its combination, and ``rows`` is its row count.
        A part that cannot be read (bad data) becomes a piece of its own, without key values,
        which fails in its worker with the error: its rows are not lost without a word.
        """
        keys = tuple(keys)
        if not keys:
            raise InputError("partition_keys: give at least one column")
        note = note or _log.info
        columns = [_arrow_name(key, self.format, self.options) for key in keys]
        entries: list[TablePiece] = []  # combinations and unreadable parts, in input order
        combinations: dict[str, TablePiece] = {}
        known: list[str] | None = None
        # Parquet by single row groups, so a worker reads only those that hold its keys.
        for part in self.iter_pieces(1 if self.format == "parquet" else scan_bytes, note=note):
            if known is None and self.format != "jsonl":
                known = _reference_columns(part.path, self.format, self.options,
                                           self.storage_options)
                missing = [k for k, c in zip(keys, columns, strict=True) if known and c not in known]
                if missing:
                    raise InputError(f"partition_keys: {missing} not among the columns of "
                                     f"{part.path}: {_short(known)}")
            try:
                table = _read_table(part, self.options, self.storage_options, columns=columns)
            except TableReadError as exc:
                if exc.retryable:
                    raise
                note(f"{exc}: these rows cannot be grouped by {list(keys)}; they are a "
                     "mini-batch of their own, which will fail")
                entries.append(part)
                continue
            counts = table.group_by(columns, use_threads=False).aggregate([([], "count_all")])
            for row in counts.to_pylist():
                value = {key: _json_value(row[column]) for key, column in zip(keys, columns, strict=True)}
                marker = json.dumps(list(value.values()))
                piece = combinations.get(marker)
                if piece is None:
                    piece = TablePiece(part.path, part.format, rows=0, partition_key_value=value,
                                       parts=[])
                    combinations[marker] = piece
                    entries.append(piece)
                piece.parts.append(part)
                piece.rows += row["count_all"]
        for piece in entries:
            if piece.parts is not None and len(piece.parts) == 1:
                piece = dataclasses.replace(piece.parts[0], rows=piece.rows, parts=None,
                                            partition_key_value=piece.partition_key_value)
            yield piece

    # -- planning, one file at a time --------------------------------------------------------

    def _text_pieces(self, item: InputItem, target: int, note: Note) -> Iterator[TablePiece]:
        if item.size <= target or not self._splittable(item, note):
            yield TablePiece(item.path, self.format)
            return
        # Equal ranges no bigger than the target: no small leftover piece at the end.
        count = -(-item.size // target)
        bounds = [item.size * k // count for k in range(count + 1)]
        for start, end in itertools.pairwise(bounds):
            yield TablePiece(item.path, self.format, start, end)

    def _splittable(self, item: InputItem, note: Note) -> bool:
        if item.path.lower().endswith(_COMPRESSED):
            note(f"{item.path} is compressed: read whole, not split")
            return False
        encoding = self.options.get("encoding", "utf-8")
        if encoding.startswith(("utf-16", "utf-32")):
            note(f"{item.path} is {encoding}: read whole, not split")
            return False
        if self.format == "jsonl":  # JSON strings cannot hold a raw line break
            return True
        quote = self.options.get("quotechar")
        multiline = self.options.get("multiline")
        if multiline is None:
            multiline = bool(quote) and _has_quoted_line_break(
                self._head(item.path), quote.encode(encoding))
            if multiline:
                note(f"{item.path} has quoted line breaks: not split")
        return not multiline

    def _head(self, path: str) -> bytes:
        try:
            with _open(path, self.storage_options) as handle:
                return handle.read(SAMPLE_BYTES)
        except OSError as exc:
            raise InputError(describe_storage_error(path, exc)) from None

    def _parquet_pieces(self, item: InputItem, target: int, note: Note) -> Iterator[TablePiece]:
        try:
            with _parquet_file(item.path, self.storage_options) as parquet:
                meta = parquet.metadata
        except Exception as exc:  # noqa: BLE001 - the worker's read gives the error its place
            note(f"{item.path}: cannot read its Parquet footer ({_message(exc)}): one "
                 "mini-batch, which will fail")
            yield TablePiece(item.path, "parquet")
            return
        if item.size <= target or meta.num_row_groups <= 1:
            yield TablePiece(item.path, "parquet", rows=meta.num_rows)
            return
        # Runs of consecutive row groups, by their size in the file (as CSV goes by bytes in
        # the file); a row group bigger than the target is a piece of its own.
        run: list[int] = []
        run_bytes = run_rows = 0
        for index in range(meta.num_row_groups):
            group = meta.row_group(index)
            size = sum(group.column(c).total_compressed_size for c in range(group.num_columns))
            if run and run_bytes + size > target:
                yield TablePiece(item.path, "parquet", row_groups=run, rows=run_rows)
                run, run_bytes, run_rows = [], 0, 0
            run.append(index)
            run_bytes += size
            run_rows += group.num_rows
        yield TablePiece(item.path, "parquet", row_groups=run, rows=run_rows)


def read_piece(piece: TablePiece, options: dict[str, Any],
               storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """The rows of one piece as a DataFrame, with the file's column names and types.

    Reads only the piece's byte range (plus its file's header line and the end of its last
    row) or row groups. Columns of a file without a header are numbered 0, 1, ...
    Raises :class:`TableReadError` naming the file and range when the rows cannot be read;
    an empty file and a file with a header but no rows are errors too.
    """
    storage_options = storage_options or {}
    if piece.partition_key_value is None:
        return _to_pandas(_read_table(piece, options, storage_options), piece.format, options)
    names = {key: _arrow_name(key, piece.format, options) for key in piece.partition_key_value}
    frames = [
        _to_pandas(_select(_read_table(part, options, storage_options),
                           piece.partition_key_value, names), piece.format, options)
        for part in piece.parts or [piece]
    ]
    if len(frames) == 1:
        return frames[0]
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def count_rows_estimate(piece: TablePiece, options: dict[str, Any],
                        storage_options: dict[str, Any] | None = None) -> int:
    """How many rows a piece holds, for counting failed items when :func:`read_piece` fails.

    Parquet: from the footer. CSV and JSON lines: the line breaks in the piece's bytes (a
    quoted line break or a blank line counts one too many). 0 when the file cannot be read.
    """
    if piece.rows is not None:
        return piece.rows
    storage_options = storage_options or {}
    try:
        if piece.format == "parquet":
            with _parquet_file(piece.path, storage_options) as parquet:
                meta = parquet.metadata
            groups = piece.row_groups if piece.row_groups is not None else range(
                meta.num_row_groups)
            return sum(meta.row_group(g).num_rows for g in groups)
        with _open(piece.path, storage_options) as handle:
            data, _ = _owned_bytes(handle, piece)
    except Exception:  # noqa: BLE001 - an estimate: what cannot be read counts nothing
        return 0
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    has_header = piece.format == "csv" and options.get("header", True) and piece.start == 0
    return max(lines - has_header, 0)


# -- reading -----------------------------------------------------------------------------------


def _read_table(piece: TablePiece, options: dict[str, Any], storage_options: dict[str, Any],
                columns: list[str] | None = None) -> pa.Table:
    """The piece as an Arrow table (only ``columns`` when given), or a TableReadError."""
    import pyarrow as pa

    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[piece.format]
    handle = None
    try:
        with _open(piece.path, storage_options) as handle:
            table = reader(piece, handle, options, columns)
    except TableReadError:
        raise
    except Exception as exc:
        if handle is None or handle.failed:  # the store did not answer, or the file is gone
            raise TableReadError(
                piece.path, piece.where, describe_storage_error(piece.path, exc),
                retryable=not isinstance(exc, FileNotFoundError | PermissionError)) from None
        if isinstance(exc, pa.ArrowException | OSError | ValueError | EOFError):  # bad data
            raise TableReadError(piece.path, piece.where, _message(exc)) from None
        raise
    if columns is None and piece.columns_from:
        _check_columns(piece, table.column_names, options, storage_options)
    return table


def _read_csv(piece: TablePiece, handle: _Tracked, options: dict[str, Any],
              columns: list[str] | None) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = options.get("header", True)
    encoding = options.get("encoding", "utf-8")
    quote = options.get("quotechar")
    head = _line_from(handle) if header and piece.start > 0 else b""
    span, offset = _owned_span(handle, piece, head)
    if piece.whole and not span.bytes().strip():
        raise TableReadError(piece.path, piece.where, "the file is empty: no header, no rows")
    if not span and not head:
        return pa.table({})
    if not piece.whole and quote:
        _check_quotes(piece, span, quote.encode(encoding))
    source = pa.py_buffer(span.with_head())  # the header, then the rows, in place
    try:
        table = pacsv.read_csv(
            pa.BufferReader(source),
            read_options=pacsv.ReadOptions(encoding=encoding, autogenerate_column_names=not header),
            parse_options=pacsv.ParseOptions(
                delimiter=options.get("separator", ","), quote_char=quote or False,
                # A whole file may hold quoted line breaks; a split one has none (checked).
                newlines_in_values=piece.whole and bool(quote)),
            convert_options=pacsv.ConvertOptions(
                null_values=_NA_VALUES, strings_can_be_null=True, include_columns=columns or ()),
        )
    except UnicodeDecodeError:  # pyarrow decodes other encodings with Python's codecs
        raise TableReadError(piece.path, piece.where,
                             _undecodable(bytes(span.with_head()), encoding, offset - len(head))
                             ) from None
    except pa.ArrowInvalid:
        if not piece.whole and quote and _has_quoted_line_break(span.bytes(),
                                                                quote.encode(encoding)):
            raise TableReadError(piece.path, piece.where, _CUT_IN_QUOTES) from None
        raise
    finally:
        del source
    # Bytes that are not UTF-8 make pyarrow give up on text and return bytes instead.
    for name, kind in zip(table.column_names, table.schema.types, strict=True):
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            raise TableReadError(piece.path, piece.where,
                                 _undecodable(bytes(span.with_head()), encoding, offset - len(head),
                                              name))
    if piece.whole and table.num_rows == 0:
        raise TableReadError(piece.path, piece.where,
                             "the file has a header but no rows" if header else "no rows")
    return table


def _read_jsonl(piece: TablePiece, handle: _Tracked, options: dict[str, Any],
                columns: list[str] | None) -> pa.Table:
    import pyarrow as pa
    import pyarrow.json as pajson

    encoding = options.get("encoding", "utf-8")
    span, offset = _owned_span(handle, piece)
    # pyarrow reads only UTF-8 and does not check it: decode here, to check or to transcode.
    try:
        text = str(span.view(), encoding)
    except UnicodeDecodeError as exc:
        raise TableReadError(piece.path, piece.where,
                             f"bytes that do not decode as {encoding} at byte {offset + exc.start}"
                             ) from None
    if not text.strip():
        if piece.whole:
            raise TableReadError(piece.path, piece.where, "the file is empty: no rows")
        return pa.table({})
    source = pa.py_buffer(span.view() if encoding == "utf-8" else text.encode("utf-8"))
    del text
    try:
        table = pajson.read_json(pa.BufferReader(source))
    finally:
        del source
    if columns is None:
        return table
    # A JSON record may leave a field out: a key missing from every record is all nulls.
    return pa.table({c: table[c] if c in table.column_names else pa.nulls(table.num_rows)
                     for c in columns})


def _read_parquet(piece: TablePiece, handle: _Tracked, options: dict[str, Any],
                  columns: list[str] | None) -> pa.Table:
    import pyarrow.parquet as pq

    with pq.ParquetFile(handle) as parquet:
        if piece.row_groups is None:
            if parquet.metadata.num_rows == 0:
                raise TableReadError(piece.path, piece.where, "the file has no rows")
            return parquet.read(columns=columns)
        return parquet.read_row_groups(piece.row_groups, columns=columns)


def _to_pandas(table: pa.Table, fmt: str, options: dict[str, Any]) -> pd.DataFrame:
    frame = table.to_pandas()
    if fmt == "csv" and not options.get("header", True):
        frame.columns = range(frame.shape[1])  # numbered, as pandas.read_csv(header=None)
    return frame


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


# -- columns -----------------------------------------------------------------------------------

_REFERENCE_COLUMNS: dict[tuple[str, ...], list[str] | None] = {}


def _check_columns(piece: TablePiece, columns: list[str], options: dict[str, Any],
                   storage_options: dict[str, Any]) -> None:
    reference = _reference_columns(piece.columns_from, piece.format, options, storage_options)
    if reference is not None and columns and columns != reference:
        raise TableReadError(piece.path, piece.where,
                             f"its columns {_short(columns)} differ from those of "
                             f"{piece.columns_from}: {_short(reference)}")


def _reference_columns(path: str, fmt: str, options: dict[str, Any],
                       storage_options: dict[str, Any]) -> list[str] | None:
    """The column names of a file (CSV: its first line), or None when it cannot be read.

    Kept for the life of the process: every piece of a job compares against the same file.
    """
    key = (path, fmt, *(repr(options.get(k)) for k in ("header", "separator", "quotechar",
                                                       "encoding")))
    if key not in _REFERENCE_COLUMNS:
        try:
            if fmt == "parquet":
                with _parquet_file(path, storage_options) as parquet:
                    names = parquet.schema_arrow.names
            else:
                with _open(path, storage_options) as handle:
                    names = _csv_names(_first_line(handle, _compression(path)), options)
        except Exception:  # noqa: BLE001 - an unreadable file fails in its own pieces
            names = None
        if len(_REFERENCE_COLUMNS) >= 64:  # a long-lived process sees many jobs
            _REFERENCE_COLUMNS.clear()
        _REFERENCE_COLUMNS[key] = names
    return _REFERENCE_COLUMNS[key]


def _csv_names(line: bytes, options: dict[str, Any]) -> list[str] | None:
    encoding = options.get("encoding", "utf-8")
    quote = options.get("quotechar")
    text = line.decode(encoding).lstrip("\ufeff")  # pyarrow drops a byte-order mark too
    fields = next(csv.reader([text], delimiter=options.get("separator", ","),
                             quotechar=quote or '"',
                             quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE), None)
    if not fields:
        return None
    return fields if options.get("header", True) else [f"f{i}" for i in range(len(fields))]


def _arrow_name(key: str, fmt: str, options: dict[str, Any]) -> str:
    """The column pyarrow reads for a partition key (``"2"`` -> ``"f2"`` without a header)."""
    if fmt == "csv" and not options.get("header", True):
        if not str(key).isdigit():
            raise InputError(f"partition_keys: {key!r}: the files have no header, so columns "
                             "are numbered (0, 1, ...)")
        return f"f{int(key)}"
    return str(key)


# -- bytes -------------------------------------------------------------------------------------


class _Tracked:
    """A file that remembers whether a read from it failed: then the store failed, not the data.

    pyarrow reads Parquet through it, so an error from inside pyarrow is told apart this way.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.failed = False

    def read(self, size: int = -1) -> bytes:
        try:
            return self._raw.read(size)
        except Exception:
            self.failed = True
            raise

    def readinto(self, buffer: Any) -> int:
        try:
            return self._raw.readinto(buffer)
        except Exception:
            self.failed = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


@contextmanager
def _open(path: str, storage_options: dict[str, Any]) -> Iterator[_Tracked]:
    """The file, for reading byte ranges: plain ``open`` here, fsspec for a store."""
    if is_remote(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(path, **storage_options)
        # No read-ahead cache: a piece reads exactly its range, in one request.
        raw = fs.open(root, "rb", cache_type="none")
    else:
        raw = open(local_path(path), "rb")  # noqa: SIM115 - closed below
    with raw:
        yield _Tracked(raw)


@contextmanager
def _parquet_file(path: str, storage_options: dict[str, Any]) -> Iterator[Any]:
    import pyarrow.parquet as pq

    with _open(path, storage_options) as handle, pq.ParquetFile(handle) as parquet:
        yield parquet


def _compression(path: str) -> str | None:
    if not path.lower().endswith(_COMPRESSED):
        return None
    import fsspec.utils

    return fsspec.utils.infer_compression(path)


def _first_line(handle: _Tracked, compression: str | None) -> bytes:
    if compression is None:
        return _line_from(handle)
    import fsspec.compression

    with fsspec.compression.compr[compression](handle) as stream:
        return _line_from(stream)


def _decompress(data: bytes, compression: str) -> bytes:
    import fsspec.compression

    try:
        with fsspec.compression.compr[compression](io.BytesIO(data)) as stream:
            return stream.read()
    except Exception as exc:  # noqa: BLE001 - each decompressor has its own error
        raise ValueError(f"cannot decompress the file ({compression}): {_message(exc)}") from None


class _Span:
    """``buf[start:stop]`` without copying it: the rows a piece owns (see :func:`_owned_span`),
    with ``head`` bytes (a CSV header) right before them."""

    __slots__ = ("buf", "start", "stop", "head")

    def __init__(self, buf: bytes | bytearray, start: int = 0, stop: int | None = None,
                 head: int = 0) -> None:
        self.buf, self.start, self.head = buf, start, head
        self.stop = len(buf) if stop is None else stop

    def __len__(self) -> int:
        return self.stop - self.start

    def find(self, sub: bytes) -> int:
        found = self.buf.find(sub, self.start, self.stop)
        return found if found < 0 else found - self.start

    def count(self, sub: bytes) -> int:
        return self.buf.count(sub, self.start, self.stop)

    def view(self) -> memoryview:
        return memoryview(self.buf)[self.start:self.stop]

    def with_head(self) -> memoryview:
        return memoryview(self.buf)[self.start - self.head:self.stop]

    def bytes(self) -> bytes:
        return bytes(self.view())


_buffers = threading.local()


def _read_into(handle: _Tracked, size: int, at: int) -> tuple[bytearray, int]:
    """Up to ``size`` bytes from the handle into this thread's reused buffer from offset ``at``;
    the buffer and how many bytes came.

    A fresh 10 MB ``bytes`` per piece costs page faults and copies that show in a job's time;
    the buffer is reused instead, so what it holds is valid until the next call in the thread.
    """
    buf = getattr(_buffers, "buf", None)
    if buf is None or len(buf) < at + size:
        buf = _buffers.buf = bytearray(at + size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = handle.readinto(view[at + got:at + size])
        if not n:
            break
        got += n
    return buf, got


def _owned_span(handle: _Tracked, piece: TablePiece, head: bytes = b"") -> tuple[_Span, int]:
    """The bytes of the rows that start in the piece's range, and the file offset they start at.

    A row starts at byte 0 or right after a line break. The bytes run from the first row that
    starts at or after ``start`` to the line break that ends the row holding byte ``end - 1``.
    ``head`` is placed right before them (:meth:`_Span.with_head`). A split piece's span lives
    in a reused buffer: valid until the next read in this thread.
    """
    base = len(head)
    if piece.whole:
        compression = _compression(piece.path)
        data = handle.read()
        if compression is not None:
            data = _decompress(data, compression)
        return _Span(head + data if head else data, base, None, base), 0
    begin = max(piece.start - 1, 0)
    handle.seek(begin)
    buf: bytearray
    if piece.end is None:
        buf = bytearray(head) + handle.read()
        span = size = len(buf) - base
    else:
        span = piece.end - begin
        buf, size = _read_into(handle, span + _OVERREAD, base)
    # positions in the read are offsets from ``base`` in ``buf``
    first = 0
    if piece.start > 0:
        # Reading from start - 1 tells whether a row starts right at ``start``.
        newline = buf.find(b"\n", base, base + min(span - 1, size))
        if newline < 0:  # no row starts in the range
            return _Span(head, base, base, base), piece.start
        first = newline + 1 - base
    start = base + first
    if size < span:  # the file ends before the range does
        stop = base + size
    else:
        last = buf.find(b"\n", base + span - 1, base + size)
        if last < 0:  # the last row goes on past what was read
            rows = head + bytes(memoryview(buf)[start:base + size]) + _line_from(handle)
            return _Span(rows, base, None, base), begin + first
        stop = last + 1
    buf[start - base:start] = head  # over the partial row before the first whole one
    return _Span(buf, start, stop, base), begin + first


def _owned_bytes(handle: _Tracked, piece: TablePiece) -> tuple[bytes, int]:
    """:func:`_owned_span` as a copy of its own."""
    span, offset = _owned_span(handle, piece)
    return span.bytes(), offset


def _line_from(handle: _Tracked | BinaryIO) -> bytes:
    """The bytes from where the handle is through the next line break (or the end of file)."""
    chunks = []
    while chunk := handle.read(_OVERREAD):
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline + 1])
            break
        chunks.append(chunk)
    return b"".join(chunks)


# -- quotes ------------------------------------------------------------------------------------

_CUT_IN_QUOTES = (
    "a quoted field holds a line break and the piece boundary cuts through it (the planner's "
    "look at the file's start did not show any); read the file with multiline=True "
    "(not split)")


def _has_quoted_line_break(data: bytes, quote: bytes) -> bool:
    """Whether a line break falls between an opening and a closing quote.

    Between the quotes of ``data.split(quote)``, odd-numbered parts are inside a quoted field
    (an escaped ``""`` only adds an empty part outside), so one look at each of them decides.
    """
    inside = data.split(quote)[1::2]
    return any(b"\n" in part or b"\r" in part for part in inside)


def _check_quotes(piece: TablePiece, data: bytes | _Span, quote: bytes) -> None:
    # Every row of a file without quoted line breaks holds an even number of quotes; an odd
    # count means the range starts or ends inside a quoted field (or a stray quote).
    if data.find(quote) >= 0 and data.count(quote) % 2:
        raise TableReadError(piece.path, piece.where,
                             "quotes do not pair up: a piece boundary falls inside a quoted "
                             "field that holds a line break, or a field has a stray quote "
                             "character; read the file with multiline=True (not split), or "
                             "quotechar=None if fields are never quoted")


# -- small helpers -----------------------------------------------------------------------------


def _undecodable(data: bytes, encoding: str, offset: int, column: str | None = None) -> str:
    """Where ``data`` (which starts at byte ``offset`` of its file) stops decoding."""
    where = "" if column is None else f" (column {column!r})"
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        return f"bytes that do not decode as {encoding} at byte {offset + exc.start}{where}"
    return f"bytes that do not decode as {encoding}{where}"


def _path_list(path: Any, what: str) -> list[str]:
    specs = [path] if isinstance(path, str | os.PathLike) else list(path or [])
    paths = [os.fspath(p) if isinstance(p, os.PathLike) else p for p in specs]
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise InputError(f"{what}: {path!r}: give a path, folder or glob, or a list of them")
    return paths


def _codec_name(encoding: str, what: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise InputError(f"{what}: encoding = {encoding!r}: not a known encoding") from None


def _describe_row_groups(groups: list[int]) -> str:
    runs: list[list[int]] = []
    for group in groups:
        if runs and group == runs[-1][1] + 1:
            runs[-1][1] = group
        else:
            runs.append([group, group])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"row group{'s' if len(groups) != 1 else ''} {text}"


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:300] + "..."


def _short(names: list[str]) -> str:
    return repr(names) if len(names) <= 12 else repr(names[:12])[:-1] + ", ...]"
