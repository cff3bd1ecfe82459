"""Secrets never reach a log: values known to be secret are replaced by ``***``.

Worker processes mask what Python writes (prints, the entry script's logger, tracebacks) as
it is written. When there are secrets, a worker's stdout and stderr (file descriptors 1 and 2,
which its child processes and C extensions write to as well) are pipes that the node reads
and masks before anything reaches a file (engine/log_pump.py), so a kill at any moment leaves
no secret on disk. A node still scrubs its log files once more when it ends.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_LENGTH = 3  # shorter values would mask ordinary words


class Masker:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_LENGTH},
                        key=len, reverse=True)
        self.secrets = values
        self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None
        encoded = sorted({v.encode("utf-8", "surrogateescape") for v in values}, key=len, reverse=True)
        self._needles = encoded
        self._bytes_pattern = re.compile(b"|".join(re.escape(v) for v in encoded)) if encoded else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text

    def mask_bytes(self, data: bytes) -> bytes:
        return self._bytes_pattern.sub(MASK.encode(), data) if self._bytes_pattern else data

    def mask_stream(self, data: bytes) -> tuple[bytes, bytes]:
        """Mask the next bytes of a stream: (what may be written now, what to keep back).

        What is kept back is the longest end of ``data`` that begins a secret; it goes before
        the stream's next bytes, so a secret written in two pieces is masked all the same.
        """
        if self._bytes_pattern is None:
            return data, b""
        cut = len(data) - self._secret_start_at_end(data)
        out, pos = [], 0
        for match in self._bytes_pattern.finditer(data):
            if match.start() >= cut:
                break
            out += [data[pos:match.start()], MASK.encode()]
            pos = match.end()
        cut = max(cut, pos)
        out.append(data[pos:cut])
        return b"".join(out), data[cut:]

    def _secret_start_at_end(self, data: bytes) -> int:
        """The length of the longest end of ``data`` that is the start of a secret (not all of it)."""
        longest = min(len(data), len(self._needles[0]) - 1) if self._needles else 0
        for size in range(longest, 0, -1):
            tail = data[-size:]
            if any(n.startswith(tail) for n in self._needles if len(n) > size):
                return size
        return 0

    def scrub_tree(self, folder: str) -> None:
        """Rewrite every file under ``folder`` that holds a secret."""
        if not self:
            return
        needles = [s.encode() for s in self.secrets]
        for dirpath, _, filenames in os.walk(folder):
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    with open(path, "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    masked = self.mask(data.decode("utf-8", "surrogateescape"))
                    with open(path, "wb") as handle:
                        handle.write(masked.encode("utf-8", "surrogateescape"))


class MaskingStream(io.TextIOBase):
    """A text stream that masks what is written through it (sys.stdout, sys.stderr)."""

    def __init__(self, stream: Any, masker: Masker) -> None:
        self._stream = stream
        self._masker = masker

    def write(self, text: str) -> int:
        self._stream.write(self._masker.mask(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


class MaskingFilter(logging.Filter):
    """Masks a log record's final message (arguments included)."""

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.masker.mask(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.masker.mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
