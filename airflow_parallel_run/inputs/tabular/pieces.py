"""What crosses from the planner to a worker: a :class:`TablePiece`, and back on failure a
:class:`TableReadError` naming the file and the place in it (worded by the helpers below)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ParallelRunError
from .registry import table_format


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
        return table_format(self.format).is_whole(self)

    @property
    def where(self) -> str:
        """The piece's place in its file, for messages: a byte range or row groups."""
        return table_format(self.format).where(self)

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


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (at most 300 characters), for a user."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:300] + "..."


def short_names(names: list[str]) -> str:
    """Column names for a message: the first dozen of a wide table."""
    return repr(names) if len(names) <= 12 else repr(names[:12])[:-1] + ", ...]"
