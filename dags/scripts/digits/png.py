"""Grayscale PNG files with the standard library only: enough for 8-bit images of digits.

The writer makes 8-bit grayscale images without interlacing; the reader takes those (any
of the five row filters), which is all this example produces.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def write_png(path: str, rows: list[list[int]]) -> None:
    """Write ``rows`` (lists of 0..255 values, all of one length) as a grayscale PNG."""
    height, width = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(row) for row in rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as handle:
        handle.write(SIGNATURE + _chunk(b"IHDR", header)
                     + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


def read_png(path: str) -> list[list[int]]:
    """The pixel rows of an 8-bit grayscale, non-interlaced PNG."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.startswith(SIGNATURE):
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, width, height = len(SIGNATURE), b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, color, interlace) != (8, 0, 0):
                raise ValueError(f"{path}: only 8-bit grayscale, non-interlaced PNGs are read")
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    rows: list[list[int]] = []
    previous = [0] * width
    for y in range(height):
        line = raw[y * (width + 1):(y + 1) * (width + 1)]
        row = _unfilter(line[0], list(line[1:]), previous)
        rows.append(row)
        previous = row
    return rows


def _unfilter(kind: int, row: list[int], up: list[int]) -> list[int]:
    for x in range(len(row)):
        left = row[x - 1] if x else 0
        up_left = up[x - 1] if x else 0
        if kind == 1:
            row[x] = (row[x] + left) & 0xFF
        elif kind == 2:
            row[x] = (row[x] + up[x]) & 0xFF
        elif kind == 3:
            row[x] = (row[x] + (left + up[x]) // 2) & 0xFF
        elif kind == 4:
            p = left + up[x] - up_left
            pa, pb, pc = abs(p - left), abs(p - up[x]), abs(p - up_left)
            predictor = left if pa <= pb and pa <= pc else up[x] if pb <= pc else up_left
            row[x] = (row[x] + predictor) & 0xFF
    return row
