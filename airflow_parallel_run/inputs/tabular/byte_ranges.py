"""Bytes of a file by range: the rows a CSV or JSON-lines piece owns, read in place.

A piece owns the rows that *start* inside its range. Its reader skips the partial line
before its first row (unless the piece starts the file) and reads past ``end`` to finish its
last row, so every row lands in exactly one piece. A split piece's bytes are read into a
buffer reused by the thread, not into a fresh ``bytes`` per piece.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from ...storage import local_path
from ..files import is_remote
from .pieces import TablePiece, first_line

# Read this much past a piece's end at once: its last row almost always ends within it, and
# a remote store then answers one request instead of two.
OVERREAD = 64 * 1024
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")


class TrackedFile:
    """A file that remembers whether a read from it failed: then the store failed, not the data.

    pyarrow reads Parquet through it, so an error from inside pyarrow is told apart this way.
    """

    def __init__(self, raw: io.BufferedIOBase) -> None:
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
def open_file(path: str, storage_options: dict[str, Any]) -> Iterator[TrackedFile]:
    """The file, for reading byte ranges: plain ``open`` here, fsspec for a store."""
    raw: io.BufferedIOBase
    if is_remote(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(path, **storage_options)
        # No read-ahead cache: a piece reads exactly its range, in one request.
        raw = fs.open(root, "rb", cache_type="none")
    else:
        raw = open(local_path(path), "rb")  # noqa: SIM115 - closed below
    with raw:
        yield TrackedFile(raw)


def compression_of(path: str) -> str | None:
    """The compression a file's name says it has (``"gzip"`` for ``.gz``, ...), or None."""
    if not path.lower().endswith(COMPRESSED):
        return None
    import fsspec.utils

    return fsspec.utils.infer_compression(path)


def first_line_of(handle: TrackedFile, compression: str | None) -> bytes:
    """The file's first line, decompressed when the file is."""
    if compression is None:
        return line_from(handle)
    import fsspec.compression

    with fsspec.compression.compr[compression](handle) as stream:
        return line_from(stream)


def _decompress(data: bytes, compression: str) -> bytes:
    import fsspec.compression

    try:
        with fsspec.compression.compr[compression](io.BytesIO(data)) as stream:
            return stream.read()
    except Exception as exc:  # noqa: BLE001 - each decompressor has its own error
        raise ValueError(f"cannot decompress the file ({compression}): {first_line(exc)}"
                         ) from None


class Span:
    """``buf[start:stop]`` without copying it: the rows a piece owns (see :func:`owned_span`),
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


def _read_into(handle: TrackedFile, size: int, at: int) -> tuple[bytearray, int]:
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


def owned_span(handle: TrackedFile, piece: TablePiece, head: bytes = b"") -> tuple[Span, int]:
    """The bytes of the rows that start in the piece's range, and the file offset they start at.

    A row starts at byte 0 or right after a line break. The bytes run from the first row that
    starts at or after ``start`` to the line break that ends the row holding byte ``end - 1``.
    ``head`` is placed right before them (:meth:`Span.with_head`). A split piece's span lives
    in a reused buffer: valid until the next read in this thread.
    """
    base = len(head)
    if piece.whole:
        compression = compression_of(piece.path)
        data = handle.read()
        if compression is not None:
            data = _decompress(data, compression)
        return Span(head + data if head else data, base, None, base), 0
    begin = max(piece.start - 1, 0)
    handle.seek(begin)
    buf: bytearray
    if piece.end is None:
        buf = bytearray(head) + handle.read()
        span = size = len(buf) - base
    else:
        span = piece.end - begin
        buf, size = _read_into(handle, span + OVERREAD, base)
    # positions in the read are offsets from ``base`` in ``buf``
    first = 0
    if piece.start > 0:
        # Reading from start - 1 tells whether a row starts right at ``start``.
        newline = buf.find(b"\n", base, base + min(span - 1, size))
        if newline < 0:  # no row starts in the range
            return Span(head, base, base, base), piece.start
        first = newline + 1 - base
    start = base + first
    if size < span:  # the file ends before the range does
        stop = base + size
    else:
        last = buf.find(b"\n", base + span - 1, base + size)
        if last < 0:  # the last row goes on past what was read
            rows = head + bytes(memoryview(buf)[start:base + size]) + line_from(handle)
            return Span(rows, base, None, base), begin + first
        stop = last + 1
    buf[start - base:start] = head  # over the partial row before the first whole one
    return Span(buf, start, stop, base), begin + first


def line_from(handle: TrackedFile | BinaryIO) -> bytes:
    """The bytes from where the handle is through the next line break (or the end of file)."""
    chunks = []
    while chunk := handle.read(OVERREAD):
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline + 1])
            break
        chunks.append(chunk)
    return b"".join(chunks)
