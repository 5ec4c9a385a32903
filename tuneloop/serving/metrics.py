"""Per-request metrics: one JSON line per invocation on stdout, and running counts.

A line holds sizes, timings and quality flags only, never the prompt or the generated text::

    {"event": "invocation", "status": 200, "latency_ms": 41.2, "prompt_tokens": 12,
     "completion_tokens": 30, "tokens_per_s": 728.2, "requests_total": 7, "errors_total": 1,
     "finish_reason": "eos", "empty": false, "truncated": false, "refusal": false}

When the container knows its endpoint (``TUNELOOP_ENDPOINT_NAME``, set by Deploy), the same
line is also a CloudWatch embedded-metric-format record (``_aws`` plus the metric members,
``tuneloop.watch.quality.emf_fields``), which CloudWatch Logs turns into ``TuneLoop/Endpoint``
metrics.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from tuneloop.watch.quality import (
    DEFAULT_REFUSAL_PATTERNS,
    Invocation,
    classify,
    compile_patterns,
    emf_fields,
)


class ServingMetrics:
    """Thread-safe counters plus the log line writer (``stream`` defaults to stdout)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        endpoint_name: str = "",
        model_version: str = "",
        refusal_patterns: Sequence[re.Pattern[str]] | None = None,
    ) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.endpoint_name = endpoint_name
        self.model_version = model_version
        self.refusal_patterns = (
            tuple(refusal_patterns)
            if refusal_patterns is not None
            else compile_patterns(DEFAULT_REFUSAL_PATTERNS)
        )
        self.requests_total = 0
        self.errors_total = 0

    def record(
        self,
        *,
        status: int,
        latency_ms: float,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        generated_text: str | None = None,
        finish_reason: str | None = None,
        model_version: str | None = None,
        component: str | None = None,
    ) -> dict[str, Any]:
        """Count one invocation (status >= 400 is an error) and log it; return the line.
        ``generated_text`` is classified (empty, truncated, refusal) and never logged.
        ``model_version`` / ``component``: the adapter that answered and its version (an
        adapter inference component's request), else the server's own version."""
        seconds = latency_ms / 1000
        tokens_per_s = (
            round(completion_tokens / seconds, 1)
            if completion_tokens is not None and seconds > 0
            else None
        )
        quality = (
            classify(generated_text, finish_reason, self.refusal_patterns)
            if generated_text is not None and status < 400
            else None
        )
        with self._lock:
            self.requests_total += 1
            if status >= 400:
                self.errors_total += 1
            line: dict[str, Any] = {
                "event": "invocation",
                "status": status,
                "latency_ms": round(latency_ms, 1),
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "tokens_per_s": tokens_per_s,
                "requests_total": self.requests_total,
                "errors_total": self.errors_total,
                "finish_reason": finish_reason,
                "empty": quality.empty if quality else None,
                "truncated": quality.truncated if quality else None,
                "refusal": quality.refusal if quality else None,
            }
            if component:
                line["inference_component"] = component
            if self.endpoint_name:
                invocation = Invocation(
                    status=status,
                    latency_ms=latency_ms,
                    output_tokens=completion_tokens,
                    tokens_per_s=tokens_per_s,
                    finish_reason=finish_reason,
                    quality=quality,
                )
                line.update(
                    emf_fields(
                        invocation,
                        endpoint_name=self.endpoint_name,
                        model_version=model_version or self.model_version,
                        timestamp_ms=int(time.time() * 1000),
                        inference_component=component,
                    )
                )
            stream = self._stream or sys.stdout
            stream.write(json.dumps(line) + "\n")
            stream.flush()
        return line
