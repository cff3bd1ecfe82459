"""JSON-lines files: one JSON object a line, its fields the columns; byte-range pieces.

A JSON string cannot hold a raw line break, so every line break ends a row and a file is
split without looking at it. Records may leave fields out, so files are not held to the
columns of the input's first file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .byte_ranges import TrackedFile, owned_span
from .formats import Note
from .lines import LineFormat
from .pieces import TablePiece, TableReadError

if TYPE_CHECKING:
    import pyarrow as pa

    from ..files import InputItem


class JsonLinesFormat(LineFormat):
    """JSON lines in any encoding (option ``encoding``); pyarrow parses them as UTF-8."""

    name = "jsonl"
    checks_columns = False

    def _lines_are_rows(self, item: InputItem, options: dict[str, Any],
                        storage_options: dict[str, Any], note: Note) -> bool:
        return True

    def read(self, piece: TablePiece, handle: TrackedFile, options: dict[str, Any],
             columns: list[str] | None) -> pa.Table:
        import pyarrow as pa
        import pyarrow.json as pajson

        encoding = options.get("encoding", "utf-8")
        span, offset = owned_span(handle, piece)
        # pyarrow reads only UTF-8 and does not check it: decode here, to check or to transcode.
        try:
            text = str(span.view(), encoding)
        except UnicodeDecodeError as exc:
            raise TableReadError(piece.path, piece.where,
                                 f"bytes that do not decode as {encoding} at byte "
                                 f"{offset + exc.start}") from None
        if not text.strip():
            if self.is_whole(piece):
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


FORMAT = JsonLinesFormat()
