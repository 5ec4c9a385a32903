"""Continuous batching: a request joins the running batch at the next decode step and
leaves it when it ends, so nobody waits for the longest answer of a fixed batch.

HTTP handler threads call ``Batcher.submit`` (or ``stream``) and block; one worker thread
owns a ``continuous.ContinuousBatch`` and loops: admit the queued requests into the free
slots (at most ``max_batch_size`` rows; they are prefilled together and their KV merged into
the batch cache), run one decode step for every row, answer the rows that ended. A request
never waits for a batch to end; a finished one is answered at once and its client can come
back into the running batch. Generation never runs on a handler thread, so ``/ping`` keeps
answering.

Only when the worker is idle does it wait for company, and only while more requests are
on their way: the HTTP handler calls ``announce()`` once a request line is in and
``arrived()`` once the request is queued or rejected; the worker then collects for up to
``wait_ms`` so that a burst is prefilled in one forward. A lone client's request starts at
once (no idle wait at concurrency 1).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from tuneloop.serving.continuous import ContinuousBatch, Running
from tuneloop.serving.decode import DecodeResult, DecodeRow, FinishReason
from tuneloop.serving.engine import GenerationRequest, Generator, TextDeltas

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
class WorkerTimes:
    """Where the worker's time went, summed since it started (for benchmarks and diagnostics:
    on a CPU, prefill can take a third of a busy server's time)."""

    admit_seconds: float = 0.0
    """Preparing and prefilling newcomers (``ContinuousBatch.admit``)."""
    step_seconds: float = 0.0
    """Decode steps (``ContinuousBatch.step``)."""
    steps: int = 0
    row_steps: int = 0
    """Rows summed over the steps: ``row_steps / steps`` is the mean batch."""


Event = tuple[str, Any]
"""What ``Batcher.stream`` yields: ``("token", (token_id, text_delta, is_special))`` per
generated token, then one ``("done", (response, finish_reason))`` or ``("error", exc)``."""


@dataclass
class _Pending:
    request: GenerationRequest
    done: threading.Event = field(default_factory=threading.Event)
    outcome: dict[str, Any] | Exception | None = None
    finish_reason: str | None = None
    events: queue.Queue[Event] | None = None
    started: float = field(default_factory=time.monotonic)

    def settle(self, outcome: dict[str, Any] | Exception, finish_reason: str | None) -> None:
        self.outcome, self.finish_reason = outcome, finish_reason
        if self.events is not None:
            if isinstance(outcome, Exception):
                self.events.put(("error", outcome))
            else:
                self.events.put(("done", (outcome, finish_reason)))
        self.done.set()


class Batcher:
    """Owns the generation worker thread; ``submit`` is safe to call from any thread."""

    def __init__(self, generator: Generator, settings: BatchSettings | None = None) -> None:
        self.generator = generator
        self.settings = settings or BatchSettings()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._arrivals_lock = threading.Lock()
        self._arriving = 0  # requests being read by a handler, not yet queued
        self.admissions: list[int] = []
        """How many requests each prefill admitted (for tests and diagnostics)."""
        self.active_rows = 0
        """Rows in the running batch after the last step; ``peak_rows`` the most so far."""
        self.peak_rows = 0
        self.times = WorkerTimes()
        """Where the worker's time went (prefill, decode steps, mean batch)."""
        self.adapter_slots_in_use: set[str] = set()
        """The adapter slots of the running rows (read under the generator's lock)."""
        self._worker = threading.Thread(target=self._serve, name="generation", daemon=True)
        self._worker.start()

    def announce(self) -> None:
        """A request is being read (call ``arrived`` once it is queued or rejected): an idle
        worker waits for it, up to the wait window, before it starts."""
        with self._arrivals_lock:
            self._arriving += 1

    def arrived(self) -> None:
        with self._arrivals_lock:
            self._arriving -= 1

    def submit(self, request: GenerationRequest, *, announced: bool = False) -> dict[str, Any]:
        """The response for ``request``; raises what generating it raised. ``announced``:
        the caller called ``announce`` for it (counted as arrived once it is queued)."""
        return self.answer(request, announced=announced)[0]

    def answer(
        self, request: GenerationRequest, *, announced: bool = False
    ) -> tuple[dict[str, Any], str | None]:
        """``submit``'s response plus why generation ended (``eos``, ``length``, ``stop``)."""
        pending = self._enqueue(_Pending(request), announced)
        pending.done.wait()
        if isinstance(pending.outcome, Exception):
            raise pending.outcome
        assert pending.outcome is not None
        return pending.outcome, pending.finish_reason

    def stream(self, request: GenerationRequest, *, announced: bool = False) -> Iterator[Event]:
        """The events of ``request`` as they happen (see ``Event``); the last is "done" or
        "error"."""
        events: queue.Queue[Event] = queue.Queue()
        # Queued now, not at the first ``next``: the request counts as arrived at once.
        self._enqueue(_Pending(request, events=events), announced)
        return _drain(events)

    def _enqueue(self, pending: _Pending, announced: bool) -> _Pending:
        self._queue.put(pending)
        if announced:
            self.arrived()
        return pending

    def close(self) -> None:
        """Stop the worker once the queued and running requests are answered."""
        self._queue.put(None)
        self._worker.join(timeout=60)

    def _serve(self) -> None:
        generator = self.generator
        batch = ContinuousBatch(
            generator.model,
            pad_token_id=generator._pad_id,
            eos_token_ids=generator._eos_ids,
            detokenize=generator._detokenize,
            max_batch_size=self.settings.max_batch_size,
        )
        stopping = False
        while True:
            if not batch.active:
                if stopping:
                    return
                first = self._queue.get()
                if first is None:
                    return
                newcomers, stopping = self._collect([first], batch.free_slots, wait=True)
            else:
                newcomers, stopping = self._collect([], batch.free_slots, wait=False)
            try:
                with generator._lock, torch.inference_mode():
                    # Adapters are registered between steps: the model may have changed.
                    batch.model, batch.mixed_adapters = generator.model, generator.mixed_adapters
                    begun = time.perf_counter()
                    self._admit(batch, newcomers)
                    admitted, rows = time.perf_counter(), len(batch.active)
                    self.peak_rows = max(self.peak_rows, rows)
                    batch.step()
                    self._account(admitted - begun, time.perf_counter() - admitted, rows)
                    self.active_rows = len(batch.active)
                    self._release_adapters(batch)
            except Exception as exc:  # a model failure fails the running rows, not the server
                for running in batch.fail_all():
                    running.on_error(exc)
                for pending in newcomers:
                    if not pending.done.is_set():
                        pending.settle(exc, None)
                self.active_rows = 0
                self.adapter_slots_in_use = set()

    def _release_adapters(self, batch: ContinuousBatch) -> None:
        """Unload the retired adapters that no running row needs any more."""
        self.adapter_slots_in_use = {
            s.row.adapter for s in batch.active if s.row.adapter is not None
        }
        if self.generator.adapters is not None:
            self.generator.adapters.release(self.adapter_slots_in_use)

    def _account(self, admit_seconds: float, step_seconds: float, rows: int) -> None:
        # Called before ``active_rows`` is set: a reader who saw the rows of a run drop to 0
        # sees the run's last step counted.
        times = self.times
        times.admit_seconds += admit_seconds
        if rows:
            times.step_seconds += step_seconds
            times.steps += 1
            times.row_steps += rows

    def _collect(
        self, batch: list[_Pending], room: int, *, wait: bool
    ) -> tuple[list[_Pending], bool]:
        """Queued requests for up to ``room`` slots; True once ``close`` was called."""
        deadline = time.monotonic() + self.settings.wait_ms / 1000
        while len(batch) < room:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if not wait or remaining <= 0 or not self._more_expected():
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
            return self._arriving > 0

    def _admit(self, batch: ContinuousBatch, newcomers: list[_Pending]) -> None:
        sequences = []
        for pending in newcomers:
            try:
                ids, row = self.generator.prepare(pending.request)
            except Exception as exc:  # this request's fault only: the others go on
                pending.settle(exc, None)
                continue
            sequences.append(self._sequence(batch, pending, ids, row))
        if sequences:
            self.admissions.append(len(sequences))
            batch.admit(sequences)

    def _sequence(
        self, batch: ContinuousBatch, pending: _Pending, ids: list[int], row: DecodeRow
    ) -> Running:
        generator, request = self.generator, pending.request

        def on_done(result: DecodeResult) -> None:
            response = generator.respond(request, ids, result, pending.started, row)
            pending.settle(response, result.finish_reason)

        on_token = None
        if pending.events is not None:
            events, deltas = pending.events, TextDeltas(generator._detokenize, request.stop)

            def on_token(token: int, reason: FinishReason | None) -> None:
                tokens = running.tokens
                text = deltas.push(tokens) if reason is None else deltas.finish(tokens)
                events.put(("token", (token, text, reason == "eos")))

        running = batch.sequence(
            row, on_done, on_token, on_error=lambda exc: pending.settle(exc, None)
        )
        return running


def _drain(events: queue.Queue[Event]) -> Iterator[Event]:
    while True:
        event = events.get()
        yield event
        if event[0] != "token":
            return
