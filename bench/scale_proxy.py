"""A counting HTTP proxy in front of an S3 server, for bench_scale_model.py.

Clients are pointed at the proxy (``AWS_ENDPOINT_URL``); it forwards every request to the
real server unchanged and counts it by method and by the part of the job its key belongs to
(input, ``.parallel_run/plan``, ``.parallel_run/results``, ``logs/...``, the output file).
Path-style addressing only (``/bucket/key``): what botocore uses for an IP-address endpoint.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length"}


def area_of(rel: str) -> str:
    """The part of a job a key (relative to the bucket) belongs to, for counting.

    ``in-50/f0001.txt`` -> ``input``; ``out-50-1/.parallel_run/results/000/00001.json`` ->
    ``.parallel_run/results``; ``out-50-1/logs/sys/node/...`` -> ``logs/sys``;
    ``out-50-1/parallel_run_step.txt`` -> ``parallel_run_step.txt``. A name's trailing
    process id or random tag (``plan.new-1234``, ``.probe-ab12``) is dropped.
    """
    parts = [p for p in rel.split("/") if p]
    if not parts:
        return "(bucket)"
    if parts[0].startswith("in"):
        return "input"
    tail = parts[1:]
    if not tail:
        return "(job folder)"
    if tail[0] in (".parallel_run", "logs") and len(tail) > 1:
        # a file right in the folder (job.json, job_result.txt) keeps its name
        return f"{tail[0]}/{re.sub(r'[-.][0-9a-f]+$', '', tail[1])}"
    return tail[0]


class CountingProxy(ThreadingHTTPServer):
    """Listens on a loopback port; ``counts[(method, area)]`` is the number of requests,
    ``received[area]`` the bytes of the answers' bodies."""

    daemon_threads = True

    def __init__(self, upstream_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream_port = upstream_port
        self.counts: Counter[tuple[str, str]] = Counter()
        self.received: Counter[str] = Counter()
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self) -> Counter[tuple[str, str]]:
        """The counts so far, and start again from zero."""
        with self.lock:
            counts, self.counts = self.counts, Counter()
            self.received = Counter()
        return counts

    def take_received(self) -> Counter[str]:
        """The answers' body bytes so far, by area (:meth:`take` clears them too)."""
        with self.lock:
            received, self.received = self.received, Counter()
        return received

    def tally(self, method: str, target: str, size: int = 0) -> None:
        url = urlsplit(target)
        _, _, key = unquote(url.path).lstrip("/").partition("/")
        query = parse_qs(url.query)
        # a bucket-level request (a listing) counts where its prefix points
        rel = key or (query.get("prefix") or [""])[0]
        kind = "LIST" if method == "GET" and not key else method
        with self.lock:
            self.counts[(kind, area_of(rel))] += 1
            self.received[area_of(rel)] += size


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingProxy

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self) -> None:
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.server.tally(self.command, self.path, len(data))
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP:
                    self.send_header(name, value)
            # a HEAD answer announces the object's length, not its own (empty) body's
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward
