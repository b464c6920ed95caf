"""A fault-injecting HTTP proxy in front of an S3 endpoint, for testing retries over real HTTP.

Point a client's endpoint at ``proxy.url``: every request is forwarded to the upstream (moto),
except that the first ``fail_first_n`` object GETs of each key fail in the chosen way:
``"503"`` (ServiceUnavailable), ``"slowdown"`` (503 SlowDown) or ``"drop"`` (headers and half
the body, then the connection is closed).
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import unquote, urlsplit

Mode = Literal["503", "slowdown", "drop"]
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}
ERROR_BODIES = {
    "503": b"<Error><Code>ServiceUnavailable</Code><Message>Injected</Message></Error>",
    "slowdown": b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"</Error>",
}


class FaultyS3Proxy:
    """Forwards to ``upstream_url``; fails the first N GETs of each object key (or only of
    keys containing ``key_contains``). Counters: ``requests``, ``object_gets`` (per key),
    ``faults`` (total injected)."""

    def __init__(
        self,
        upstream_url: str,
        fail_first_n: int,
        mode: Mode = "503",
        key_contains: str | None = None,
    ) -> None:
        self.upstream = urlsplit(upstream_url)
        self.fail_first_n, self.mode, self.key_contains = fail_first_n, mode, key_contains
        self.requests = 0
        self.object_gets: Counter[str] = Counter()
        self.faults = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultyS3Proxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultyS3Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def decide(self, method: str, path: str) -> Mode | None:
        """Count the request; the fault to inject, or None to forward it untouched."""
        parts = urlsplit(path)
        key = unquote(parts.path).lstrip("/").partition("/")[2]
        with self._lock:
            self.requests += 1
            is_object_get = method == "GET" and key and "list-type" not in parts.query
            if not is_object_get or (self.key_contains and self.key_contains not in key):
                return None
            self.object_gets[key] += 1
            if self.object_gets[key] > self.fail_first_n:
                return None
            self.faults += 1
            return self.mode

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes | None):
        """Send the request upstream unchanged (Host included, so signatures still match)."""
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy.decide(self.command, self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                if fault in ERROR_BODIES:
                    self._reply(503, [("Content-Type", "application/xml")], ERROR_BODIES[fault])
                    return
                status, upstream_headers, data = proxy.forward(
                    self.command, self.path, headers, body
                )
                if fault == "drop":
                    self._reply(status, upstream_headers, data, cut=len(data) // 2)
                    return
                self._reply(status, upstream_headers, data)

            def _reply(self, status, headers, data: bytes, cut: int | None = None) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data if cut is None else data[:cut])
                self.wfile.flush()
                self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return Handler
