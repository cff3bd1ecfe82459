"""What the planner needs from a Parquet footer, read without pyarrow.

Loading pyarrow costs a process about 50 MB of memory of its own (the relocated pages of its
C++ libraries and its Python modules); the node, which only plans, would pay it for a few
numbers per row group. So a small footer (the Thrift compact encoding of ``FileMetaData``)
is decoded here: the row count, and each row group's rows and compressed size. A footer
this module cannot read (encrypted, too big to be worth decoding in Python, not Parquet)
gives None, and the caller asks pyarrow; so do all footers once a process has spent as long
decoding them here as importing pyarrow would have cost (many files' footers).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Any

MAGIC = b"PAR1"
MAX_FOOTER = 1 << 20  # bigger footers (many thousands of column chunks) are faster in pyarrow
# Decoding in Python is slower than pyarrow (about 0.6 ms per KB of footer against pyarrow's
# import of about 0.25 s): once a process has spent that long here, pyarrow reads the rest.
PYTHON_SECONDS = 0.25
_spent = [0.0]

# Thrift compact protocol types
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)


@dataclass(frozen=True)
class RowGroup:
    num_rows: int
    compressed_size: int  # of its column chunks, as they are stored in the file


@dataclass(frozen=True)
class Footer:
    num_rows: int
    row_groups: list[RowGroup]

    @property
    def num_row_groups(self) -> int:
        return len(self.row_groups)


class _Malformed(Exception):
    pass


class _Reader:
    """A cursor over Thrift compact bytes; structs decode to {field id: value}."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise _Malformed("the footer ends in the middle of a value")
        self.at += 1
        return self.data[self.at - 1]

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise _Malformed("a number longer than 10 bytes")

    def zigzag(self) -> int:
        number = self.varint()
        return (number >> 1) ^ -(number & 1)

    def value(self, kind: int) -> Any:
        if kind in (_TRUE, _FALSE):
            return kind == _TRUE
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            self.at += 8
            return None
        if kind == _BINARY:
            size = self.varint()
            self.at += size
            return None  # no text is needed: names and statistics are skipped
        if kind in (_LIST, _SET):
            return self.sequence()
        if kind == _MAP:
            return self.mapping()
        if kind == _STRUCT:
            return self.struct()
        raise _Malformed(f"unknown Thrift type {kind}")

    def sequence(self) -> list[Any]:
        header = self.byte()
        size, kind = header >> 4, header & 0x0F
        if size == 15:
            size = self.varint()
        if kind in (_TRUE, _FALSE):  # a list's booleans are one byte each
            self.at += size
            return []
        return [self.value(kind) for _ in range(size)]

    def mapping(self) -> None:
        size = self.varint()
        if size:
            kinds = self.byte()
            for _ in range(size):
                self.value(kinds >> 4)
                self.value(kinds & 0x0F)

    def struct(self) -> dict[int, Any]:
        fields: dict[int, Any] = {}
        field = 0
        while True:
            header = self.byte()
            kind = header & 0x0F
            if kind == 0:
                return fields
            delta = header >> 4
            field = field + delta if delta else self.zigzag()
            fields[field] = self.value(kind)


def read_footer(handle: Any, size: int) -> Footer | None:
    """The footer of the Parquet file open in ``handle`` (``size`` bytes), or None when it
    is not one this module reads (the caller then asks pyarrow, which says what is wrong)."""
    if size < 12 or _spent[0] > PYTHON_SECONDS:
        return None
    handle.seek(size - 8)
    tail = handle.read(8)
    length = struct.unpack("<I", tail[:4])[0]
    if tail[4:] != MAGIC or length > MAX_FOOTER or length > size - 12:
        return None
    handle.seek(size - 8 - length)
    data = handle.read(length)
    started = time.perf_counter()
    try:
        return _decode(data)
    except (_Malformed, IndexError, KeyError, TypeError):
        return None
    finally:
        _spent[0] += time.perf_counter() - started


def _decode(data: bytes) -> Footer:
    meta = _Reader(data).struct()
    groups = []
    for group in meta.get(4, []):  # FileMetaData.row_groups
        # RowGroup.columns[i].meta_data.total_compressed_size (ColumnChunk 3, ColumnMetaData 7)
        size = sum(chunk[3][7] for chunk in group[1])
        groups.append(RowGroup(num_rows=group[3], compressed_size=size))
    return Footer(num_rows=meta[3], row_groups=groups)
