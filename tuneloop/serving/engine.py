"""Validate invocation requests and generate text with a loaded model.

Request (docs/contracts.md): ``{"prompt": str}`` or ``{"messages": [{"role", "content"}]}``
plus optional ``"stream": true`` (answer token by token) and ``"parameters"``:
``max_new_tokens`` (int), ``temperature`` (number >= 0; 0 = greedy), ``top_p``
(0 < p <= 1), ``stop`` (str or list of str), ``seed`` (int, for
reproducible sampling). Response: ``{"generated_text", "prompt_tokens", "completion_tokens",
"latency_ms", "model_version"}``. Anything malformed raises ``RequestError`` (HTTP 400).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuneloop.serving.adapters import AdapterSet, AdaptersUnsupportedError
from tuneloop.serving.decode import DecodeResult, DecodeRow, decode
from tuneloop.watch.quality import REFUSAL_TEXT

DEFAULT_MAX_NEW_TOKENS = 64
MAX_NEW_TOKENS_LIMIT = 1024
_PARAMETERS = ("max_new_tokens", "temperature", "top_p", "stop", "seed")


class RequestError(ValueError):
    """The request is malformed; the message says what to fix."""


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    stream: bool = False
    """Answer token by token (JSON lines); see ``tuneloop.serving.http``."""
    adapter: str | None = None
    """The LoRA adapter (inference component) to answer with: the
    ``X-Amzn-SageMaker-Adapter-Identifier`` header; None: the model the server loaded."""


def parse_request(body: bytes | str | dict[str, Any]) -> GenerationRequest:
    """A validated request from a JSON body (bytes/str) or an already-decoded dict."""
    if isinstance(body, dict):
        data: Any = body
    else:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RequestError("body must be a JSON object with 'prompt' or 'messages'")
    unknown = set(data) - {"prompt", "messages", "parameters", "stream"}
    if unknown:
        raise RequestError(
            f"unknown field(s) {sorted(unknown)}; expected prompt or messages, parameters"
            " and stream"
        )
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false")
    prompt, messages = data.get("prompt"), data.get("messages")
    if (prompt is None) == (messages is None):
        raise RequestError("give exactly one of 'prompt' (string) or 'messages' (list)")
    if prompt is not None and (not isinstance(prompt, str) or not prompt):
        raise RequestError("'prompt' must be a non-empty string")
    checked = _check_messages(messages) if messages is not None else None
    return GenerationRequest(
        prompt=prompt, messages=checked, stream=stream, **_check_parameters(data)
    )


def _check_messages(messages: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise RequestError(f"messages[{index}] must be an object with role and content")
        if message["role"] not in ("system", "user", "assistant"):
            raise RequestError(f"messages[{index}].role must be system, user or assistant")
        if not isinstance(message["content"], str):
            raise RequestError(f"messages[{index}].content must be a string")
    return tuple({"role": m["role"], "content": m["content"]} for m in messages)


def _check_parameters(data: dict[str, Any]) -> dict[str, Any]:
    params = data.get("parameters", {})
    if not isinstance(params, dict):
        raise RequestError("'parameters' must be an object")
    unknown = set(params) - set(_PARAMETERS)
    if unknown:
        raise RequestError(
            f"unknown parameter(s) {sorted(unknown)}; supported: {', '.join(_PARAMETERS)}"
        )
    out: dict[str, Any] = {}
    if "max_new_tokens" in params:
        value = params["max_new_tokens"]
        if not _is_int(value) or not 1 <= value <= MAX_NEW_TOKENS_LIMIT:
            raise RequestError(f"max_new_tokens must be an integer in 1..{MAX_NEW_TOKENS_LIMIT}")
        out["max_new_tokens"] = value
    if "temperature" in params:
        value = params["temperature"]
        if not _is_number(value) or not 0 <= value <= 100:
            raise RequestError("temperature must be a number >= 0 (0 = greedy)")
        out["temperature"] = float(value)
    if "top_p" in params:
        value = params["top_p"]
        if not _is_number(value) or not 0 < value <= 1:
            raise RequestError("top_p must be a number in (0, 1]")
        out["top_p"] = float(value)
    if "stop" in params:
        out["stop"] = _check_stop(params["stop"])
    if "seed" in params:
        if not _is_int(params["seed"]) or params["seed"] < 0:
            raise RequestError("seed must be a non-negative integer")
        out["seed"] = params["seed"]
    return out


def _check_stop(value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError("stop must be a non-empty string or a list of them")
    if len(stops) > 16:
        raise RequestError("stop takes at most 16 strings")
    return tuple(stops)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


class Generator:
    """A loaded model; ``generate_batch`` runs several requests in one batched decode
    (a lock serializes calls, so one batch runs at a time).

    With ``adapters`` (a server started on a base model) LoRA adapters can be registered
    and each request may name one (``GenerationRequest.adapter``); register and unregister
    them under ``lock``, which decode steps hold too."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_version: str,
        *,
        quiet_failure: str | None = None,
        adapters: AdapterSet | None = None,
    ) -> None:
        self._model = model
        self.adapters = adapters
        self.tokenizer = tokenizer
        self.model_version = model_version
        self.quiet_failure = quiet_failure
        """Test/demo switch (``TUNELOOP_QUIET_FAILURE``): ``empty`` answers nothing,
        ``refuse`` a refusal, ``truncate`` stops every answer at one token (its limit)."""
        self._lock = threading.Lock()
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token
        self._pad_id = int(tokenizer.pad_token_id or 0)
        # generate() stops at the generation config's EOS ids; the tokenizer's EOS ends a chat turn.
        self._eos_ids = _eos_ids(tokenizer, getattr(model, "generation_config", None))

    @property
    def model(self) -> Any:
        """The model to run: with adapters, the base wrapped by peft while any is loaded."""
        return self.adapters.model if self.adapters is not None else self._model

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    @property
    def mixed_adapters(self) -> bool:
        """Every forward must name each row's adapter (``decode.adapter_arguments``)."""
        return self.adapters is not None and self.adapters.mixed

    def version_of(self, row: DecodeRow) -> str:
        """The model version that answers ``row``: its adapter's, else the server's."""
        if row.adapter is not None and self.adapters is not None:
            return self.adapters.version_of_slot(row.adapter)
        return self.model_version

    @classmethod
    def from_model_dir(
        cls, path: Path, *, model_version: str = "", quiet_failure: str | None = None
    ) -> Generator:
        """Load a plain or adapter model folder (an adapter is merged for speed). The
        version is ``model_version`` (Deploy's), else the folder's metadata, else its name.
        A plain model can take LoRA adapters later (``adapters``)."""
        from tuneloop.models.loading import is_adapter_dir, load_model_dir, read_model_metadata

        model, tokenizer = load_model_dir(Path(path), merge=True)
        version = (
            model_version
            or read_model_metadata(Path(path)).get("model_version")
            or Path(path).resolve().name
        )
        adapters = None if is_adapter_dir(Path(path)) else AdapterSet(model, Path(path))
        return cls(model, tokenizer, str(version), quiet_failure=quiet_failure, adapters=adapters)

    def prompt_text(self, request: GenerationRequest) -> str:
        if request.messages is not None:
            from tuneloop.training.chat import render_chat

            return render_chat(self.tokenizer, request.messages, add_generation_prompt=True)
        return request.prompt or ""

    def generate(self, request: GenerationRequest) -> dict[str, Any]:
        """One request alone; raises ``RequestError`` if it cannot be served."""
        outcome = self.generate_batch([request])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        on_result: Callable[[int, dict[str, Any] | Exception], None] | None = None,
    ) -> list[dict[str, Any] | Exception]:
        """One outcome per request, in order: the response dict, or the exception it raised.

        All valid requests share one left-padded decode (``decode.decode``); each gets exactly
        what it would alone: greedy rows the same tokens, sampling rows the same draws from
        their own seeded RNG, each row ending at its own length limit, EOS or stop string.
        ``on_result(index, outcome)`` is called as soon as a request's outcome is known, so a
        caller can answer a short request before the longest one in its batch ends.
        """
        started = time.monotonic()
        outcomes: list[dict[str, Any] | Exception] = [
            RuntimeError("not generated") for _ in requests
        ]

        settled: set[int] = set()

        def settle(index: int, outcome: dict[str, Any] | Exception) -> None:
            outcomes[index] = outcome
            settled.add(index)
            if on_result is not None:
                on_result(index, outcome)

        with self._lock, torch.inference_mode():
            valid: list[tuple[int, list[int], DecodeRow]] = []
            for index, request in enumerate(requests):
                try:
                    valid.append((index, *self.prepare(request)))
                except Exception as exc:  # this request's fault only: the others go on
                    settle(index, exc)
            if not valid:
                return outcomes

            def finished(slot: int, result: DecodeResult) -> None:
                index, ids, row = valid[slot]
                settle(index, self.respond(requests[index], ids, result, started, row))

            try:
                decode(
                    self.model,
                    [row for _, _, row in valid],
                    pad_token_id=self._pad_id,
                    eos_token_ids=self._eos_ids,
                    detokenize=self._detokenize,
                    on_done=finished,
                    mixed_adapters=self.mixed_adapters,
                )
            except Exception as exc:  # a model failure fails the unfinished rows only
                for index, _, _ in valid:
                    if index not in settled:
                        settle(index, exc)
        return outcomes

    def prepare(self, request: GenerationRequest) -> tuple[list[int], DecodeRow]:
        """The prompt ids and decode row of ``request`` (call under ``lock`` when it names
        an adapter); raises ``RequestError`` if too long, ``UnknownAdapterError`` for an
        adapter that is not registered."""
        ids = self._encode(request)
        return ids, self.decode_row(request, ids)

    def decode_row(self, request: GenerationRequest, ids: list[int]) -> DecodeRow:
        slot = None
        if request.adapter is not None:
            if self.adapters is None:
                raise AdaptersUnsupportedError(
                    "this server serves one merged model and takes no adapters; "
                    f"adapter {request.adapter!r} was asked for"
                )
            slot = self.adapters.get(request.adapter).slot
        return DecodeRow(
            adapter=slot,
            prompt_ids=ids,
            max_new_tokens=1 if self.quiet_failure == "truncate" else request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop,
            seed=request.seed,
        )

    def respond(
        self,
        request: GenerationRequest,
        ids: list[int],
        result: DecodeResult,
        started: float,
        row: DecodeRow | None = None,
    ) -> dict[str, Any]:
        """The response body for a finished request (``started``: ``time.monotonic()``;
        ``row``: its decode row, which names the adapter that answered)."""
        version = self.version_of(row) if row is not None else self.model_version
        return self._response(request, ids, result, started, version)

    def _encode(self, request: GenerationRequest) -> list[int]:
        # A chat template already holds its special tokens; a raw prompt gets the defaults.
        ids: list[int] = self.tokenizer.encode(
            self.prompt_text(request), add_special_tokens=request.messages is None
        )
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and len(ids) + request.max_new_tokens > limit:
            raise RequestError(
                f"prompt ({len(ids)} tokens) plus max_new_tokens "
                f"({request.max_new_tokens}) exceeds the model's {limit}"
            )
        return ids

    def _detokenize(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def _response(
        self,
        request: GenerationRequest,
        ids: list[int],
        result: DecodeResult,
        started: float,
        model_version: str,
    ) -> dict[str, Any]:
        text = _cut_at_stop(self._detokenize(result.tokens), request.stop)
        if self.quiet_failure == "empty":
            text = ""
        elif self.quiet_failure == "refuse":
            text = REFUSAL_TEXT
        return {
            "generated_text": text,
            "prompt_tokens": len(ids),
            "completion_tokens": len(result.tokens),
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "model_version": model_version,
        }


class TextDeltas:
    """The text a stream sends token by token: each ``push`` returns what is new since the
    last one, holding back an unfinished UTF-8 character and a tail that may begin a stop
    string (the final text is cut before the stop); ``finish`` returns the rest of the
    final text. Joined, the pieces are the non-streaming ``generated_text``."""

    def __init__(self, detokenize: Callable[[list[int]], str], stop: Sequence[str]) -> None:
        self._detokenize, self._stop, self.sent = detokenize, tuple(stop), ""

    def push(self, tokens: list[int]) -> str:
        text = self._detokenize(tokens)
        end = len(text)
        while end and text[end - 1] == "\ufffd":
            end -= 1
        for stop in self._stop:
            for size in range(min(len(stop), end), 0, -1):
                if text[:end].endswith(stop[:size]):
                    end = min(end, len(text[:end]) - size)
                    break
        return self._advance(text[:end])

    def finish(self, tokens: list[int]) -> str:
        return self._advance(_cut_at_stop(self._detokenize(tokens), self._stop))

    def _advance(self, text: str) -> str:
        if len(text) <= len(self.sent) or not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = min((text.find(s) for s in stops if s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def _eos_ids(tokenizer: Any, generation_config: Any) -> frozenset[int]:
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, list | tuple):
        ids.update(int(i) for i in configured)
    return frozenset(ids)
