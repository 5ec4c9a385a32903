"""Per-request metrics: one JSON line per invocation on stdout, and running counts.

A line holds sizes and timings only, never the prompt or the generated text::

    {"event": "invocation", "status": 200, "latency_ms": 41.2, "prompt_tokens": 12,
     "completion_tokens": 30, "tokens_per_s": 728.2, "requests_total": 7, "errors_total": 1}
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO


class ServingMetrics:
    """Thread-safe counters plus the log line writer (``stream`` defaults to stdout)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.requests_total = 0
        self.errors_total = 0

    def record(
        self,
        *,
        status: int,
        latency_ms: float,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> dict[str, Any]:
        """Count one invocation (status >= 400 is an error) and log it; return the line."""
        seconds = latency_ms / 1000
        tokens_per_s = (
            round(completion_tokens / seconds, 1)
            if completion_tokens is not None and seconds > 0
            else None
        )
        with self._lock:
            self.requests_total += 1
            if status >= 400:
                self.errors_total += 1
            line = {
                "event": "invocation",
                "status": status,
                "latency_ms": round(latency_ms, 1),
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "tokens_per_s": tokens_per_s,
                "requests_total": self.requests_total,
                "errors_total": self.errors_total,
            }
            stream = self._stream or sys.stdout
            stream.write(json.dumps(line) + "\n")
            stream.flush()
        return line
