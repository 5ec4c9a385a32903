"""The SageMaker serving HTTP contract on the standard library's threading server.

``GET /ping`` answers 200 while a generation runs (generation runs on the batcher's worker
thread, not the server's); ``POST /invocations`` returns the engine's JSON, or 400
``{"error": ...}`` for a bad request. A request with ``"stream": true`` (or an ``Accept`` /
``X-Amzn-SageMaker-Accept`` header of ``application/jsonlines``, as SageMaker's
``InvokeEndpointWithResponseStream`` sends) is answered in chunks, one JSON line per
generated token, ``{"token": {"id", "text", "special"}}`` (the text is the new part; EOS
is ``special`` with empty text), then a last line with the response fields plus
``first_token_ms`` and ``details: {finish_reason, generated_tokens}`` (LMI's stream
format, plus our fields). Concurrent invocations are batched (``batching``) and
each one logs a metrics line (``metrics``). Nothing a client sends can crash the server.

A server started on a base model also speaks SageMaker's LoRA adapter API
(``tuneloop.serving.adapters``): ``POST /adapters`` ``{"name", "src"}`` loads an adapter,
``DELETE /adapters/<name>`` unloads it, ``GET /adapters`` lists them, and an invocation
with the ``X-Amzn-SageMaker-Adapter-Identifier`` header is answered by that adapter (404 if
none has that name); its metrics line carries the adapter's name and version.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from tuneloop.serving.adapters import (
    ADAPTER_HEADER,
    AdapterError,
    AdaptersUnsupportedError,
    UnknownAdapterError,
    check_adapter_name,
)
from tuneloop.serving.batching import Batcher, BatchSettings, Event
from tuneloop.serving.engine import GenerationRequest, Generator, RequestError, parse_request
from tuneloop.serving.metrics import ServingMetrics

MAX_BODY_BYTES = 1_000_000
STREAM_CONTENT_TYPE = "application/jsonlines"
# The body was not read: the connection cannot be reused.
_CLOSING = (HTTPStatus.LENGTH_REQUIRED, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


class InferenceServer(ThreadingHTTPServer):
    """The HTTP server plus its batcher and metrics; ``server_close`` stops the batcher."""

    daemon_threads = True  # a hung client must not block shutdown
    # socketserver's default backlog of 5 resets or delays (SYN retry) a burst of clients.
    request_queue_size = 128
    batcher: Batcher
    metrics: ServingMetrics

    def server_close(self) -> None:
        super().server_close()
        # A failed bind calls this from __init__, before make_server has set the batcher.
        batcher: Batcher | None = getattr(self, "batcher", None)
        if batcher is not None:
            batcher.close()


def make_server(
    generator: Generator,
    host: str,
    port: int,
    *,
    batch_settings: BatchSettings | None = None,
    metrics_stream: TextIO | None = None,
    metrics: ServingMetrics | None = None,
    access_log: bool = True,
) -> InferenceServer:
    """A server bound to ``host:port`` (port 0 picks a free one), not yet serving.
    ``metrics``: the line writer (its endpoint and refusal patterns); by default one writing
    to ``metrics_stream``. ``access_log=False`` drops the per-request access lines (the
    metrics lines stay)."""
    batcher = Batcher(generator, batch_settings)
    stats_writer = metrics or ServingMetrics(metrics_stream, model_version=generator.model_version)

    class Handler(_Handler):
        engine = generator
        batch = batcher
        stats = stats_writer
        log_requests = access_log

    try:
        server = InferenceServer((host, port), Handler)
    except BaseException:  # e.g. the port is taken: do not leave the worker running
        batcher.close()
        raise
    server.batcher, server.metrics = batcher, stats_writer
    return server


@dataclass(frozen=True)
class _Stream:
    events: Iterator[Event]


_CLIENT_ERRORS: tuple[tuple[type[Exception], HTTPStatus], ...] = (
    (RequestError, HTTPStatus.BAD_REQUEST),
    (AdapterError, HTTPStatus.BAD_REQUEST),
    (UnknownAdapterError, HTTPStatus.NOT_FOUND),
    (AdaptersUnsupportedError, HTTPStatus.CONFLICT),
)


def _error_status(exc: Exception) -> tuple[HTTPStatus, dict[str, Any]]:
    for kind, status in _CLIENT_ERRORS:
        if isinstance(exc, kind):
            return status, {"error": str(exc.args[0]) if exc.args else str(exc)}
    # A model failure is a 500 for this request, not a crash.
    traceback.print_exception(exc, file=sys.stderr)
    return HTTPStatus.INTERNAL_SERVER_ERROR, {
        "error": f"generation failed: {type(exc).__name__}: {exc}"
    }


class _Handler(BaseHTTPRequestHandler):
    engine: Generator
    batch: Batcher
    stats: ServingMetrics
    log_requests = True
    protocol_version = "HTTP/1.1"

    _announced = False
    _component: str | None = None
    """The adapter (inference component) the current invocation asked for."""

    def setup(self) -> None:
        super().setup()
        # Streamed tokens are small writes: without this, Nagle holds each one back until the
        # client's (delayed) ACK of the previous one, tens of ms per token.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def parse_request(self) -> bool:
        # The request line is in: an invocation is on its way, keep the next batch open.
        ok = super().parse_request()
        if ok and self.command == "POST" and self.path == "/invocations":
            self.batch.announce()
            self._announced = True
        return ok

    def _arrived(self) -> None:
        if self._announced:
            self._announced = False
            self.batch.arrived()

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(HTTPStatus.OK, {"status": "ok", "model_version": self.engine.model_version})
        elif self.path == "/adapters":
            self._send(*self._adapters_call(self._list_adapters))
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route GET {self.path}"})

    def do_DELETE(self) -> None:
        prefix = "/adapters/"
        if not self.path.startswith(prefix) or len(self.path) == len(prefix):
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route DELETE {self.path}"})
            return
        name = urllib.parse.unquote(self.path[len(prefix) :])
        self._send(*self._adapters_call(lambda: self._unregister(name)))

    def do_POST(self) -> None:
        if self.path == "/adapters":
            self._send(*self._adapters_call(self._register))
            return
        if self.path != "/invocations":
            self._discard_body()
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route POST {self.path}"})
            return
        started = time.monotonic()
        self._component = None  # a kept-alive connection's handler serves many requests
        try:
            outcome = self._invoke()
        finally:  # a request rejected before it was queued is no longer on its way
            self._arrived()
        finish_reason = None
        if isinstance(outcome, _Stream):
            status, result = self._stream(outcome, started)
            if status == HTTPStatus.OK:
                return
        else:
            status, result, finish_reason = outcome
        latency_ms = (time.monotonic() - started) * 1000
        if status == HTTPStatus.OK:  # the client's latency includes the wait for a batch
            result["latency_ms"] = round(latency_ms, 1)
        # Logged before the reply is sent, so a client that has its answer sees its line.
        self.stats.record(
            status=int(status),
            latency_ms=latency_ms,
            prompt_tokens=result.get("prompt_tokens"),
            completion_tokens=result.get("completion_tokens"),
            generated_text=result.get("generated_text"),
            finish_reason=finish_reason,
            model_version=result.get("model_version"),
            component=self._component,
        )
        self._send(status, result, close=status in _CLOSING)

    def _adapters_call(
        self, call: Callable[[], dict[str, Any]]
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        """Run an adapter API call; 409 when this server takes no adapters."""
        try:
            if self.engine.adapters is None:
                raise AdaptersUnsupportedError(
                    "this server serves one merged model; start it on a base model "
                    "to serve adapters"
                )
            return HTTPStatus.OK, call()
        except Exception as exc:
            return _error_status(exc)

    def _list_adapters(self) -> dict[str, Any]:
        assert self.engine.adapters is not None
        with self.engine.lock:
            adapters = self.engine.adapters.names()
        return {
            "adapters": [
                {"name": a.name, "model_version": a.model_version, "src": a.source}
                for a in adapters.values()
            ]
        }

    def _register(self) -> dict[str, Any]:
        assert self.engine.adapters is not None
        body = self._json_body()
        name, source = body.get("name"), body.get("src")
        if not isinstance(source, str) or not source:
            raise AdapterError("'src' must name the adapter's folder or .tar.gz file")
        with self.engine.lock:  # between decode steps: peft changes the model's layers
            adapter = self.engine.adapters.register(check_adapter_name(name), source)
        return {
            "message": f"Adapter {adapter.name} registered",
            "name": adapter.name,
            "model_version": adapter.model_version,
        }

    def _unregister(self, name: str) -> dict[str, Any]:
        assert self.engine.adapters is not None
        with self.engine.lock:
            self.engine.adapters.unregister(name)
            self.engine.adapters.release(self.batch.adapter_slots_in_use)
        return {"message": f"Adapter {name} unregistered", "name": name}

    def _json_body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise AdapterError("Content-Length header required") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise AdapterError(f"body must be at most {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError as exc:
            raise AdapterError(f"body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise AdapterError('body must be a JSON object {"name", "src"}')
        return body

    def _wants_stream(self, request: GenerationRequest) -> bool:
        accept = " ".join(
            self.headers.get(name, "") for name in ("Accept", "X-Amzn-SageMaker-Accept")
        )
        return request.stream or STREAM_CONTENT_TYPE in accept

    def _stream(self, stream: _Stream, started: float) -> tuple[HTTPStatus, dict[str, Any]]:
        """Send the response as JSON lines in chunks; an error before the first token is
        an ordinary error response (returned), after it a last ``{"error"}`` line."""
        events = stream.events
        kind, value = next(events)
        if kind == "error":
            return _error_status(value)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", STREAM_CONTENT_TYPE)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first_token_ms: float | None = None
        completion_tokens = prompt_tokens = None
        text: str | None = None
        version: str | None = None
        reason: str | None = None
        status = HTTPStatus.OK
        while True:
            if kind == "token":
                token, text, special = value
                if first_token_ms is None:
                    first_token_ms = (time.monotonic() - started) * 1000
                line: dict[str, Any] = {"token": {"id": token, "text": text, "special": special}}
            elif kind == "done":
                response, reason = value
                prompt_tokens, completion_tokens = (
                    response["prompt_tokens"],
                    response["completion_tokens"],
                )
                text, version = response.get("generated_text"), response.get("model_version")
                line = {
                    **response,
                    "latency_ms": round((time.monotonic() - started) * 1000, 1),
                    "first_token_ms": round(first_token_ms or 0.0, 1),
                    "details": {"finish_reason": reason, "generated_tokens": completion_tokens},
                }
            else:
                status, line = _error_status(value)
            if not self._chunk(json.dumps(line).encode("utf-8") + b"\n"):
                return HTTPStatus.OK, {}  # the client went away; the row ends by itself
            if kind != "token":
                break
            kind, value = next(events)
        self._chunk(b"")
        self.stats.record(
            status=int(status),
            latency_ms=(time.monotonic() - started) * 1000,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            generated_text=text,
            finish_reason=reason,
            model_version=version,
            component=self._component,
        )
        return HTTPStatus.OK, {}

    def _chunk(self, data: bytes) -> bool:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        return True

    def _invoke(self) -> tuple[HTTPStatus, dict[str, Any], str | None] | _Stream:
        """The status, body and finish reason of the answer, or the stream to send."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length header required"}, None
        if length < 0 or length > MAX_BODY_BYTES:
            return (
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body must be at most {MAX_BODY_BYTES} bytes"},
                None,
            )
        try:
            request = parse_request(self.rfile.read(length))
            adapter = self.headers.get(ADAPTER_HEADER)
            if adapter:
                request = dataclasses.replace(request, adapter=adapter)
                self._component = adapter
            announced, self._announced = self._announced, False
            if self._wants_stream(request):
                return _Stream(self.batch.stream(request, announced=announced))
            response, reason = self.batch.answer(request, announced=announced)
            return HTTPStatus.OK, response, reason
        except Exception as exc:
            return (*_error_status(exc), None)

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
        if self.log_requests and not self.path.startswith("/ping"):
            super().log_message(format, *args)
