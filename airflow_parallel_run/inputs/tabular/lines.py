"""What CSV and JSON lines share: one row a line, so a file is cut by byte range.

The planner cuts a file into equal byte ranges without reading it; each piece owns the
rows that start in its range (see :mod:`.byte_ranges`). A compressed file, or one in an
encoding whose line breaks are not the byte ``\\n``, is one piece.
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .byte_ranges import COMPRESSED, open_file, owned_span
from .formats import Note, TableFormat
from .pieces import TablePiece

if TYPE_CHECKING:
    from ..files import InputItem


class LineFormat(TableFormat):
    """A format whose rows are lines: split by byte range at line ends."""

    def split(self, item: InputItem, target: int, options: dict[str, Any],
              storage_options: dict[str, Any], note: Note) -> Iterator[TablePiece]:
        if item.size <= target or not self._splittable(item, options, storage_options, note):
            yield TablePiece(item.path, self.name)
            return
        # Equal ranges no bigger than the target: no small leftover piece at the end.
        count = -(-item.size // target)
        bounds = [item.size * k // count for k in range(count + 1)]
        for start, end in itertools.pairwise(bounds):
            yield TablePiece(item.path, self.name, start, end)

    def _splittable(self, item: InputItem, options: dict[str, Any],
                    storage_options: dict[str, Any], note: Note) -> bool:
        if item.path.lower().endswith(COMPRESSED):
            note(f"{item.path} is compressed: read whole, not split")
            return False
        encoding = options.get("encoding", "utf-8")
        if encoding.startswith(("utf-16", "utf-32")):
            note(f"{item.path} is {encoding}: read whole, not split")
            return False
        return self._lines_are_rows(item, options, storage_options, note)

    @abstractmethod
    def _lines_are_rows(self, item: InputItem, options: dict[str, Any],
                        storage_options: dict[str, Any], note: Note) -> bool:
        """Whether every line break in the file ends a row, so a cut at one is safe."""

    def is_whole(self, piece: TablePiece) -> bool:
        return piece.start == 0 and piece.end is None

    def where(self, piece: TablePiece) -> str:
        if self.is_whole(piece):
            return "bytes 0-end, the whole file"
        return f"bytes {piece.start}-{'end' if piece.end is None else piece.end}"

    def count_rows(self, piece: TablePiece, options: dict[str, Any],
                   storage_options: dict[str, Any]) -> int:
        """The line breaks in the piece's bytes (a quoted line break or a blank line counts
        one too many), less a header line."""
        with open_file(piece.path, storage_options) as handle:
            data = owned_span(handle, piece)[0].bytes()
        lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        return max(lines - self._header_lines(piece, options), 0)

    def _header_lines(self, piece: TablePiece, options: dict[str, Any]) -> int:
        """Lines at the start of the piece that are not rows."""
        return 0
