"""CSV (and other delimited) files: byte-range pieces, each read with its file's header line.

A CSV field in quotes may hold a line break, and a cut there would split a row. Before
splitting a file the planner reads its first :data:`SAMPLE_BYTES`; a file with a quoted line
break is not split (and the planner says so) unless ``multiline=`` decides instead. Pieces
of a split file check themselves: quotes that do not pair up mean a cut inside a quoted
field, and the piece fails with an error naming its file and range instead of returning
wrong rows.
"""

from __future__ import annotations

import bisect
import csv
import re
from typing import TYPE_CHECKING, Any

from ...errors import InputError
from ...storage import describe_storage_error
from .byte_ranges import (
    Span,
    TrackedFile,
    compression_of,
    first_line_of,
    line_from,
    open_file,
    owned_span,
)
from .formats import Note, codec_name, undecodable
from .lines import LineFormat
from .pieces import TablePiece, TableReadError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ..files import InputItem

# How much of a CSV file the planner reads to look for quoted line breaks.
SAMPLE_BYTES = 256 * 1024
# pandas.read_csv's default na_values, so that a piece reads as pandas would read it.
_NA_VALUES = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
_CUT_IN_QUOTES = (
    "a quoted field holds a line break and the piece boundary cuts through it (the planner's "
    "look at the file's start did not show any); read the file with multiline=True "
    "(not split)")


def delimited_options(*, separator: str, header: bool, encoding: str, quotechar: str | None,
                      multiline: bool | None, what: str) -> dict[str, Any]:
    """The reading options of a CSV dataset, checked; an InputError naming ``what`` if not."""
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
    return {"separator": separator, "header": header, "encoding": codec_name(encoding, what),
            "quotechar": quotechar or None, "multiline": multiline}


class CsvFormat(LineFormat):
    """Delimited text; a piece after the first of its file reads the file's header line too.

    Options: ``separator``, ``header``, ``encoding``, ``quotechar``, ``multiline`` (see
    :meth:`TabularDataset.from_delimited_files`).
    """

    name = "csv"

    def _lines_are_rows(self, item: InputItem, options: dict[str, Any],
                        storage_options: dict[str, Any], note: Note) -> bool:
        quote = options.get("quotechar")
        multiline = options.get("multiline")
        if multiline is None and quote:
            encoding = options.get("encoding", "utf-8")
            multiline = has_quoted_line_break(self._sample(item.path, storage_options),
                                              quote.encode(encoding))
            if multiline:
                note(f"{item.path} has quoted line breaks: not split")
        return not multiline

    @staticmethod
    def _sample(path: str, storage_options: dict[str, Any]) -> bytes:
        try:
            with open_file(path, storage_options) as handle:
                return handle.read(SAMPLE_BYTES)
        except OSError as exc:
            raise InputError(describe_storage_error(path, exc)) from None

    def read(self, piece: TablePiece, handle: TrackedFile, options: dict[str, Any],
             columns: list[str] | None) -> pa.Table:
        import pyarrow as pa

        header = options.get("header", True)
        quote = options.get("quotechar")
        whole = self.is_whole(piece)
        head = line_from(handle) if header and piece.start > 0 else b""
        span, offset = owned_span(handle, piece, head)
        if whole and not span.bytes().strip():
            raise TableReadError(piece.path, piece.where, "the file is empty: no header, no rows")
        if not span and not head:
            return pa.table({})
        if not whole and quote:
            _check_quotes(piece, span, quote.encode(options.get("encoding", "utf-8")))
        table = self._parse(piece, span, offset - len(head), options, columns)
        if whole and table.num_rows == 0:
            raise TableReadError(piece.path, piece.where,
                                 "the file has a header but no rows" if header else "no rows")
        return table

    def _parse(self, piece: TablePiece, span: Span, offset: int, options: dict[str, Any],
               columns: list[str] | None) -> pa.Table:
        """The header and rows of ``span`` through pyarrow's CSV reader, in place.

        ``offset`` is the file offset the bytes (header included) count from, for messages
        that name where bytes do not decode.
        """
        import pyarrow as pa
        import pyarrow.csv as pacsv

        encoding = options.get("encoding", "utf-8")
        quote = options.get("quotechar")
        source = pa.py_buffer(span.with_head())
        try:
            table = pacsv.read_csv(
                pa.BufferReader(source),
                read_options=pacsv.ReadOptions(
                    encoding=encoding, autogenerate_column_names=not options.get("header", True)),
                parse_options=pacsv.ParseOptions(
                    delimiter=options.get("separator", ","), quote_char=quote or False,
                    # A whole file may hold quoted line breaks; a split one has none (checked).
                    newlines_in_values=self.is_whole(piece) and bool(quote)),
                convert_options=pacsv.ConvertOptions(
                    null_values=_NA_VALUES, strings_can_be_null=True,
                    include_columns=columns or ()),
            )
        except UnicodeDecodeError:  # pyarrow decodes other encodings with Python's codecs
            raise TableReadError(piece.path, piece.where,
                                 undecodable(bytes(span.with_head()), encoding, offset)) from None
        except pa.ArrowInvalid:
            if (not self.is_whole(piece) and quote
                    and has_quoted_line_break(span.bytes(), quote.encode(encoding))):
                raise TableReadError(piece.path, piece.where, _CUT_IN_QUOTES) from None
            raise
        finally:
            del source
        # Bytes that are not UTF-8 make pyarrow give up on text and return bytes instead.
        for name, kind in zip(table.column_names, table.schema.types, strict=True):
            if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
                raise TableReadError(piece.path, piece.where,
                                     undecodable(bytes(span.with_head()), encoding, offset, name))
        return table

    def _header_lines(self, piece: TablePiece, options: dict[str, Any]) -> int:
        return 1 if options.get("header", True) and piece.start == 0 else 0

    def count_rows(self, piece: TablePiece, options: dict[str, Any],
                   storage_options: dict[str, Any]) -> int:
        """The rows that start in the piece, as the reader would find them: a line break
        inside a quoted field is part of its row, and an empty line is no row."""
        quote = options.get("quotechar")
        encoding = options.get("encoding", "utf-8")
        if not quote or encoding.startswith(("utf-16", "utf-32")):
            return super().count_rows(piece, options, storage_options)
        mark = quote.encode(encoding)
        with open_file(piece.path, storage_options) as handle:
            if piece.whole:  # decompressed when it is compressed
                data, inside = owned_span(handle, piece)[0].bytes(), False
            else:
                data, inside = _bytes_from_row_before(piece, handle, mark)
        rows = _row_starts(data, inside, mark, first=piece.start == 0)
        return max(rows - self._header_lines(piece, options), 0)

    def column_names(self, path: str, options: dict[str, Any],
                     storage_options: dict[str, Any]) -> list[str] | None:
        """The names in the file's first line (numbered ``f0``, ``f1``, ... without a header)."""
        with open_file(path, storage_options) as handle:
            line = first_line_of(handle, compression_of(path))
        quote = options.get("quotechar")
        text = line.decode(options.get("encoding", "utf-8")).lstrip("\ufeff")  # as pyarrow does
        fields = next(csv.reader([text], delimiter=options.get("separator", ","),
                                 quotechar=quote or '"',
                                 quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE), None)
        if not fields:
            return None
        return fields if options.get("header", True) else [f"f{i}" for i in range(len(fields))]

    def key_column(self, key: str, options: dict[str, Any]) -> str:
        """``"2"`` -> ``"f2"`` without a header, as pyarrow numbers the columns."""
        if options.get("header", True):
            return str(key)
        if not str(key).isdigit():
            raise InputError(f"partition_keys: {key!r}: the files have no header, so columns "
                             "are numbered (0, 1, ...)")
        return f"f{int(key)}"

    def to_pandas(self, table: pa.Table, options: dict[str, Any]) -> pd.DataFrame:
        frame = super().to_pandas(table, options)
        if not options.get("header", True):
            # Numbered, as pandas.read_csv(header=None); pandas keeps a range as a RangeIndex,
            # which its stubs do not list.
            frame.columns = range(frame.shape[1])  # type: ignore[assignment]
        return frame


def has_quoted_line_break(data: bytes, quote: bytes) -> bool:
    """Whether a line break falls between an opening and a closing quote.

    Between the quotes of ``data.split(quote)``, odd-numbered parts are inside a quoted field
    (an escaped ``""`` only adds an empty part outside), so one look at each of them decides.
    """
    inside = data.split(quote)[1::2]
    return any(b"\n" in part or b"\r" in part for part in inside)


# Where earlier counts of a file's pieces ended, and whether that was inside quotes, so that
# counting its pieces in order reads the file once: (path, size) -> sorted [(offset, inside)].
_QUOTE_STATES: dict[tuple[str, int], list[tuple[int, bool]]] = {}
_ROW_START = re.compile(rb"\n[^\r\n]")  # a line break that starts a row that is not empty


def _bytes_from_row_before(piece: TablePiece, handle: TrackedFile,
                           quote: bytes) -> tuple[bytes, bool]:
    """The file's bytes from the one before the piece's start to its end, and whether that
    first byte is inside a quoted field (from the quotes before it: each quote toggles)."""
    size = handle.seek(0, 2)
    key = (piece.path, size)
    known = _QUOTE_STATES.setdefault(key, [(0, False)])
    begin = max(piece.start - 1, 0)
    offset, inside = known[bisect.bisect_right(known, (begin, True)) - 1]
    handle.seek(offset)
    while offset < begin:
        chunk = handle.read(min(8 << 20, begin - offset))
        if not chunk:
            break
        inside ^= chunk.count(quote) % 2 == 1
        offset += len(chunk)
    end = size if piece.end is None else min(piece.end, size)
    data = handle.read(max(end - begin, 0))
    if len(_QUOTE_STATES) > 64:  # a long-lived process sees many files
        _QUOTE_STATES.clear()
    state = (begin + len(data), inside ^ (data.count(quote) % 2 == 1))
    if state not in known:
        bisect.insort(known, state)
    return data, inside


def _row_starts(data: bytes, inside: bool, quote: bytes, first: bool) -> int:
    """Rows that start within ``data``: after a line break outside quotes (``inside``: data
    begins in a quoted field), not at its very end, and at its start when ``first``."""
    rows = 1 if first and data[:1] not in (b"", b"\n", b"\r") else 0
    parts = data.split(quote)
    for number, part in enumerate(parts):
        if (number % 2 == 1) != inside:  # inside quotes: a line break there is data
            continue
        rows += len(_ROW_START.findall(part))
        if part.endswith(b"\n") and number < len(parts) - 1:  # a quote starts the next row
            rows += 1
    return rows


def _check_quotes(piece: TablePiece, data: bytes | Span, quote: bytes) -> None:
    # Every row of a file without quoted line breaks holds an even number of quotes; an odd
    # count means the range starts or ends inside a quoted field (or a stray quote).
    if data.find(quote) >= 0 and data.count(quote) % 2:
        raise TableReadError(piece.path, piece.where,
                             "quotes do not pair up: a piece boundary falls inside a quoted "
                             "field that holds a line break, or a field has a stray quote "
                             "character; read the file with multiline=True (not split), or "
                             "quotechar=None if fields are never quoted")


FORMAT = CsvFormat()
