"""The SageMaker serving HTTP contract on the standard library's threading server.

``GET /ping`` answers 200 while a generation runs (generation holds the engine's lock, not
the server); ``POST /invocations`` returns the engine's JSON, or 400 ``{"error": ...}`` for a
bad request. Nothing a client sends can crash the server.
"""

from __future__ import annotations

import json
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tuneloop.serving.engine import Generator, RequestError, parse_request

MAX_BODY_BYTES = 1_000_000


def make_server(generator: Generator, host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0 picks a free one), not yet serving."""

    class Handler(_Handler):
        engine = generator

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True  # a hung client must not block shutdown
    return server


class _Handler(BaseHTTPRequestHandler):
    engine: Generator
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(HTTPStatus.OK, {"status": "ok", "model_version": self.engine.model_version})
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/invocations":
            self._discard_body()
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route POST {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(
                HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length header required"}, close=True
            )
            return
        if length < 0 or length > MAX_BODY_BYTES:
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body must be at most {MAX_BODY_BYTES} bytes"},
                close=True,
            )
            return
        body = self.rfile.read(length)
        try:
            result = self.engine.generate(parse_request(body))
        except RequestError as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        except Exception as exc:  # a model failure is a 500 for this request, not a crash
            traceback.print_exc(file=sys.stderr)
            self._send(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"generation failed: {type(exc).__name__}: {exc}"},
            )
            return
        self._send(HTTPStatus.OK, result)

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)

    def _send(self, status: HTTPStatus, payload: dict[str, Any], *, close: bool = False) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # One access-log line per request on stderr, without the health-check noise.
        if not self.path.startswith("/ping"):
            super().log_message(format, *args)
