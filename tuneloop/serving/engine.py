"""Validate invocation requests and generate text with a loaded model.

Request (docs/contracts.md): ``{"prompt": str}`` or ``{"messages": [{"role", "content"}]}``
plus optional ``"parameters"``: ``max_new_tokens`` (int), ``temperature`` (number >= 0; 0 =
greedy), ``top_p`` (0 < p <= 1), ``stop`` (str or list of str), ``seed`` (int, for
reproducible sampling). Response: ``{"generated_text", "prompt_tokens", "completion_tokens",
"latency_ms", "model_version"}``. Anything malformed raises ``RequestError`` (HTTP 400).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

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
    unknown = set(data) - {"prompt", "messages", "parameters"}
    if unknown:
        raise RequestError(
            f"unknown field(s) {sorted(unknown)}; expected prompt or messages, and parameters"
        )
    prompt, messages = data.get("prompt"), data.get("messages")
    if (prompt is None) == (messages is None):
        raise RequestError("give exactly one of 'prompt' (string) or 'messages' (list)")
    if prompt is not None and (not isinstance(prompt, str) or not prompt):
        raise RequestError("'prompt' must be a non-empty string")
    checked = _check_messages(messages) if messages is not None else None
    return GenerationRequest(prompt=prompt, messages=checked, **_check_parameters(data))


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
    """A loaded model; ``generate_batch`` runs several requests in one ``model.generate`` call
    (a lock serializes calls, so one batch runs at a time)."""

    def __init__(self, model: Any, tokenizer: Any, model_version: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_version = model_version
        self._lock = threading.Lock()
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_model_dir(cls, path: Path) -> Generator:
        """Load a plain or adapter model folder (adapters are merged for speed)."""
        from tuneloop.models.loading import load_model_dir, read_model_metadata

        model, tokenizer = load_model_dir(Path(path), merge=True)
        version = read_model_metadata(Path(path)).get("model_version") or Path(path).resolve().name
        return cls(model, tokenizer, str(version))

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
        self, requests: Sequence[GenerationRequest]
    ) -> list[dict[str, Any] | Exception]:
        """One outcome per request, in order: the response dict, or the exception it raised.

        Greedy requests share one left-padded ``generate`` call and each gets exactly what it
        would alone (its own length limit and stop strings end its row). A sampling request
        runs on its own so that its ``seed`` still reproduces its text.
        """
        started = time.monotonic()
        outcomes: list[dict[str, Any] | Exception] = [
            RuntimeError("not generated") for _ in requests
        ]
        greedy: list[tuple[int, list[int]]] = []
        for index, request in enumerate(requests):
            try:
                ids = self._encode(request)
            except Exception as exc:  # this request's fault only: the others go on
                outcomes[index] = exc
                continue
            if request.temperature > 0:
                outcomes[index] = self._run_guarded([(request, ids)], started)[0]
            else:
                greedy.append((index, ids))
        if greedy:
            results = self._run_guarded([(requests[i], ids) for i, ids in greedy], started)
            for (index, _), result in zip(greedy, results, strict=True):
                outcomes[index] = result
        return outcomes

    def _encode(self, request: GenerationRequest) -> list[int]:
        # A chat template already holds its special tokens; a raw prompt gets the defaults.
        ids: list[int] = self.tokenizer(
            self.prompt_text(request), add_special_tokens=request.messages is None
        )["input_ids"]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and len(ids) + request.max_new_tokens > limit:
            raise RequestError(
                f"prompt ({len(ids)} tokens) plus max_new_tokens "
                f"({request.max_new_tokens}) exceeds the model's {limit}"
            )
        return ids

    def _run_guarded(
        self, rows: list[tuple[GenerationRequest, list[int]]], started: float
    ) -> list[dict[str, Any] | Exception]:
        try:
            return list(self._run(rows, started))
        except Exception as exc:  # a model failure fails this group, not the server
            return [exc for _ in rows]

    def _run(
        self, rows: list[tuple[GenerationRequest, list[int]]], started: float
    ) -> list[dict[str, Any]]:
        width = max(len(ids) for _, ids in rows)
        pad = self.tokenizer.pad_token_id
        # Left padding: every row's last prompt token sits at the same position.
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in rows])
        attention_mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for _, ids in rows]
        )
        first = rows[0][0]
        stop = _RowStops(
            self.tokenizer,
            width,
            [request.max_new_tokens for request, _ in rows],
            [request.stop for request, _ in rows],
        )
        options: dict[str, Any] = {
            "max_new_tokens": max(request.max_new_tokens for request, _ in rows),
            "pad_token_id": pad,
            "stopping_criteria": StoppingCriteriaList([stop]),
        }
        if first.temperature > 0:
            options.update(do_sample=True, temperature=first.temperature, top_p=first.top_p)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            if first.seed is not None:
                torch.manual_seed(first.seed)
            output = self.model.generate(
                input_ids=input_ids.to(self.model.device),
                attention_mask=attention_mask.to(self.model.device),
                **options,
            )
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        eos = self.tokenizer.eos_token_id
        results = []
        for row, (request, ids) in enumerate(rows):
            length = stop.finished_at[row] or request.max_new_tokens
            new_tokens = output[row, width : width + length].tolist()
            if new_tokens and eos is not None and new_tokens[-1] == eos:
                new_tokens = new_tokens[:-1]
            generated = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
            results.append(
                {
                    "generated_text": _cut_at_stop(generated, request.stop),
                    "prompt_tokens": len(ids),
                    "completion_tokens": len(new_tokens),
                    "latency_ms": latency_ms,
                    "model_version": self.model_version,
                }
            )
        return results


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = min((text.find(s) for s in stops if s in text), default=-1)
    return text[:cut] if cut >= 0 else text


class _RowStops(StoppingCriteria):
    """Ends each row on its own: at its EOS, its ``max_new_tokens`` or one of its stop strings,
    and records how many tokens the row had generated then (later ones are padding)."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_width: int,
        limits: Sequence[int],
        stops: Sequence[Sequence[str]],
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.limits = limits
        self.stops = stops
        self.finished_at: list[int | None] = [None] * len(limits)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        generated = int(input_ids.shape[1]) - self.prompt_width
        eos = self.tokenizer.eos_token_id
        for row, done_at in enumerate(self.finished_at):
            if done_at is not None:
                continue
            last = int(input_ids[row, -1])
            if generated >= self.limits[row] or (eos is not None and last == eos):
                self.finished_at[row] = generated
            elif self.stops[row]:
                text = self.tokenizer.decode(
                    input_ids[row, self.prompt_width :], skip_special_tokens=True
                )
                if any(stop in text for stop in self.stops[row]):
                    self.finished_at[row] = generated
        done = [at is not None for at in self.finished_at]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
