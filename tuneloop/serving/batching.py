"""Dynamic batching: requests arriving within a short window are generated together.

HTTP handler threads call ``Batcher.submit`` and block; one worker thread takes the first
waiting request, collects more for up to ``wait_ms`` (at most ``max_batch_size`` in all) and
runs them in one ``Generator.generate_batch`` call. Generation never runs on a handler
thread, so ``/ping`` keeps answering.

The window is waited only while more requests can be expected: the HTTP handler calls
``announce()`` once a request line is in and ``arrived()`` once the request is queued or
rejected, and the worker stops collecting as soon as the queue is empty, no request is being
read and every client answered by the previous batch is back (clients answered together
come back together: waiting for them keeps a steady concurrency in full batches instead of
alternating halves). A lone client's request therefore starts at once (no idle wait at
concurrency 1), and a burst starts as soon as its last request is queued.
A finished row leaves the decode at once (no compute is spent on it), but its answer is sent
when the whole batch ends: clients answered together come back together, so batches stay
full at a steady concurrency (answering rows as they end splits them into ever smaller
batches, since a new request joins only the next batch).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneloop.serving.engine import GenerationRequest, Generator

DEFAULT_BATCH_WAIT_MS = 10.0
DEFAULT_MAX_BATCH_SIZE = 8
_POLL_SECONDS = 0.002


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    wait_ms: float = DEFAULT_BATCH_WAIT_MS

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max batch size must be >= 1, got {self.max_batch_size}")
        if not 0 <= self.wait_ms <= 10_000:
            raise ValueError(f"batch wait must be in 0..10000 ms, got {self.wait_ms}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BatchSettings:
        """From ``TUNELOOP_MAX_BATCH_SIZE`` and ``TUNELOOP_BATCH_WAIT_MS`` (defaults if unset)."""
        size_text = env.get("TUNELOOP_MAX_BATCH_SIZE") or str(DEFAULT_MAX_BATCH_SIZE)
        wait_text = env.get("TUNELOOP_BATCH_WAIT_MS") or str(DEFAULT_BATCH_WAIT_MS)
        try:
            size = int(size_text)
        except ValueError:
            raise ValueError(
                f"TUNELOOP_MAX_BATCH_SIZE must be an integer, got {size_text!r}"
            ) from None
        try:
            wait = float(wait_text)
        except ValueError:
            raise ValueError(
                f"TUNELOOP_BATCH_WAIT_MS must be a number, got {wait_text!r}"
            ) from None
        return cls(max_batch_size=size, wait_ms=wait)


@dataclass
class _Pending:
    request: GenerationRequest
    done: threading.Event = field(default_factory=threading.Event)
    outcome: dict[str, Any] | Exception | None = None


class Batcher:
    """Owns the generation worker thread; ``submit`` is safe to call from any thread."""

    def __init__(self, generator: Generator, settings: BatchSettings | None = None) -> None:
        self.generator = generator
        self.settings = settings or BatchSettings()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._arrivals_lock = threading.Lock()
        self._arriving = 0  # requests being read by a handler, not yet queued
        self._returning = 0  # answered by the last batch and not back yet
        self._worker = threading.Thread(target=self._serve, name="generation", daemon=True)
        self._worker.start()

    def announce(self) -> None:
        """A request is being read (call ``arrived`` once it is queued or rejected): until
        then the worker keeps its batch open for it, up to the wait window."""
        with self._arrivals_lock:
            self._arriving += 1

    def arrived(self) -> None:
        with self._arrivals_lock:
            self._arriving -= 1

    def submit(self, request: GenerationRequest, *, announced: bool = False) -> dict[str, Any]:
        """The response for ``request``; raises what generating it raised. ``announced``:
        the caller called ``announce`` for it (counted as arrived once it is queued)."""
        pending = _Pending(request)
        with self._arrivals_lock:
            self._returning = max(0, self._returning - 1)
        self._queue.put(pending)
        if announced:
            self.arrived()
        pending.done.wait()
        if isinstance(pending.outcome, Exception):
            raise pending.outcome
        assert pending.outcome is not None
        return pending.outcome

    def close(self) -> None:
        """Stop the worker once the queued requests are answered."""
        self._queue.put(None)
        self._worker.join(timeout=60)

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._collect(first)
            self._answer(batch)
            if stopping:
                return

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch = [first]
        deadline = time.monotonic() + self.settings.wait_ms / 1000
        while len(batch) < self.settings.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._more_expected():
                    break
                try:  # short naps: an arrival that is rejected never reaches the queue
                    item = self._queue.get(timeout=min(remaining, _POLL_SECONDS))
                except queue.Empty:
                    continue
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _more_expected(self) -> bool:
        with self._arrivals_lock:
            return self._arriving > 0 or self._returning > 0

    def _answer(self, batch: list[_Pending]) -> None:
        try:
            outcomes = self.generator.generate_batch([p.request for p in batch])
        except Exception as exc:  # never leave a caller waiting
            outcomes = [exc for _ in batch]
        with self._arrivals_lock:
            self._returning = len(batch)
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.outcome = outcome
            pending.done.set()
