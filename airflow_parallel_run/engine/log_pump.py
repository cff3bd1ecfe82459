"""The node's log pump: workers' stdout and stderr, masked, into their log files.

Used when the job has secrets: a worker's file descriptors 1 and 2 are then pipes (inherited
by whatever it starts), and one thread of the node copies what comes out of them into the
log files, secrets masked, even one written in two pieces. Nothing unmasked is ever written
to a file, so a kill of anything at any moment leaves no secret on disk.
"""

from __future__ import annotations

import os
import selectors
import threading
from dataclasses import dataclass

from ..masking import Masker
from ..storage import write_all

CHUNK = 65536


@dataclass
class _Sink:
    log_fd: int
    held: bytes = b""  # the end of what came so far that may begin a secret


class LogPump:
    """One thread copying pipes into log files through a masker (see the module)."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="log-pump", daemon=True)
        self._thread.start()

    def pipe_to(self, path: str) -> int:
        """A new pipe whose bytes are appended to ``path``, masked: its write end, for a
        process to inherit (the caller closes it once the process has started)."""
        log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        read_fd, write_fd = os.pipe()
        with self._lock:
            self._selector.register(read_fd, selectors.EVENT_READ, _Sink(log_fd))
        os.write(self._wake_w, b"x")
        return write_fd

    def stop(self) -> None:
        """Copy what is left in the pipes, then end the thread and close everything."""
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select():
                if key.data is None:
                    os.read(self._wake_r, 4096)
                else:
                    self._copy(key.fd, key.data)
        with self._lock:  # the last bytes: whoever still writes does so to no one
            for key in list(self._selector.get_map().values()):
                if key.data is not None:
                    os.set_blocking(key.fd, False)
                    self._drain(key.fd, key.data)
            self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _drain(self, fd: int, sink: _Sink) -> None:
        for _ in range(64):  # bounded: an escaped process may write for ever
            if not self._copy(fd, sink):
                break
        self._close(fd, sink)

    def _copy(self, fd: int, sink: _Sink) -> bool:
        """Copy one chunk; False when there is none now (at the end, the pipe is closed)."""
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return False
        if not data:  # every writer is gone
            self._close(fd, sink)
            return False
        out, sink.held = self.masker.mask_stream(sink.held + data)
        self._write(sink, out)
        return True

    def _write(self, sink: _Sink, data: bytes) -> None:
        try:
            write_all(sink.log_fd, data)
        except OSError:  # a full disk costs log lines, never a worker blocked on its pipe
            pass

    def _close(self, fd: int, sink: _Sink) -> None:
        if sink.log_fd < 0:
            return
        self._write(sink, self.masker.mask_bytes(sink.held))
        sink.held = b""
        self._selector.unregister(fd)
        os.close(fd)
        os.close(sink.log_fd)
        sink.log_fd = -1
