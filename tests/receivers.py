"""A local HTTP receiver for what integrations send out (Sentry envelopes, OTLP metrics): records every POST.

Bodies are stored decompressed (gzip, deflate; brotli when the ``brotli`` module is there), so a test reads what
the client meant to send, and can look for a secret anywhere in it.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    return body


class HttpReceiver:
    """``with HttpReceiver() as receiver:`` a server on a free port; ``receiver.received`` lists the POSTs."""

    def __init__(self, status: int = 200, reply: bytes = b"{}", content_type: str = "application/json") -> None:
        self.received: list[Received] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = _decompress(body, self.headers.get("Content-Encoding", ""))
                owner.received.append(Received(self.path, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for(self, predicate, timeout: float = 15.0) -> list[Received]:
        """The received POSTs that satisfy ``predicate``, waiting up to ``timeout`` for at least one."""
        deadline = time.monotonic() + timeout
        while True:
            found = [item for item in list(self.received) if predicate(item)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
