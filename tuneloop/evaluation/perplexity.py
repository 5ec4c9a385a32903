"""Held-out perplexity: how well a model predicts a slice of the curated data it was not
trained on (domain fit), and whether a new adapter forgot it (forgetting).

Input: the Evaluate job's optional ``heldout`` channel, ``*.jsonl`` files (any depth) in the
training format: ``{"text": str}`` or ``{"messages": [{"role", "content"}]}``. Records are
tokenized exactly as training tokenizes them (``tuneloop.training.data.encode_record``), so
the scored tokens are the ones training puts a loss on: every token of a text (plus EOS),
only the assistant turns of a conversation. Records longer than the model's window are cut
to the window, as training cuts them to ``max_length``.

Report (suite ``heldout_perplexity``, kind ``perplexity``); both metrics are **lower is
better** (``lower_is_better`` lists them), and there is no ``acc``: this is not an accuracy.

- per item (``id`` = ``<file>:<line>``): ``nll_per_token`` = mean negative log-likelihood
  per scored token (nats), ``nll_sum`` and ``n_tokens``.
- per suite: ``nll_per_token`` = total NLL / total scored tokens (token-level, lm-eval's
  ``word_perplexity`` style weighting), ``perplexity`` = ``exp(nll_per_token)``,
  ``n_tokens``, and ``nll_per_token_stderr`` (standard error of the per-item values).

The gate compares ``perplexity`` with a relative tolerance (``tuneloop.gating.decide``):
the token-weighted NLL difference is bootstrapped over items, so a long record weighs as
much as its tokens.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.evaluation.errors import BenchmarkError
from tuneloop.evaluation.metrics import mean_stderr

NAME = "heldout_perplexity"
KIND = "perplexity"
LOWER_IS_BETTER = ("perplexity", "nll_per_token")
# Full logits are batch x tokens x vocabulary floats (~200 KB per token for a 49k
# vocabulary): a batch holds at most this many padded tokens, or one record.
MAX_BATCH_TOKENS = 2048
_VERSION_SALT = "tuneloop-heldout/1"
IGNORE = -100  # tuneloop.training.data.IGNORE_INDEX (imported lazily: it pulls in torch)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class HeldoutRecord:
    id: str
    record: dict[str, Any]  # {"text": str} or {"messages": [{"role", "content"}]}


@dataclass(frozen=True)
class HeldoutSet:
    """The held-out records and their content version (sha256 of the normalized records)."""

    records: tuple[HeldoutRecord, ...]
    version: str
    name: str = NAME

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "n_items": len(self.records), "kind": KIND}


def load_heldout(channel: Path | None) -> HeldoutSet | None:
    """The records of every ``*.jsonl`` under ``channel``; None when it is absent or empty."""
    if channel is None or not channel.is_dir():
        return None
    records: list[HeldoutRecord] = []
    for path in sorted(p for p in channel.rglob("*.jsonl") if p.is_file()):
        file = path.relative_to(channel).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise BenchmarkError(file, line, None, "not valid UTF-8") from exc
        for number, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                records.append(HeldoutRecord(f"{file}:{number}", parse_record(raw, file, number)))
    if not records:
        return None
    return HeldoutSet(tuple(records), _version(records))


def parse_record(raw: str, file: str, line: int) -> dict[str, Any]:
    """A training-format record; ``BenchmarkError`` naming file, line and field otherwise."""
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise BenchmarkError(file, line, None, f"not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise BenchmarkError(file, line, None, "a record must be a JSON object")
    if "text" in obj:
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            raise BenchmarkError(file, line, "text", "must be a non-empty string")
        return {"text": obj["text"]}
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BenchmarkError(
            file, line, "messages", "a record needs a non-empty 'text' or 'messages' list"
        )
    for index, message in enumerate(messages):
        for key in ("role", "content"):
            if not isinstance(message, dict) or not isinstance(message.get(key), str):
                raise BenchmarkError(file, line, f"messages[{index}].{key}", "must be a string")
    if not any(message["role"] == "assistant" for message in messages):
        raise BenchmarkError(file, line, "messages", "no assistant turn: nothing to score")
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}


def _version(records: Sequence[HeldoutRecord]) -> str:
    digest = hashlib.sha256(f"{_VERSION_SALT}\n".encode())
    for record in records:
        line = json.dumps(
            {"id": record.id, **record.record},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def score_heldout(
    model: Any,
    tokenizer: Any,
    heldout: HeldoutSet,
    batch_size: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The ``heldout_perplexity`` result for one model (see the module docstring)."""
    from tuneloop.evaluation import lm
    from tuneloop.training.data import encode_record

    window = lm.max_length(model)
    encoded = [encode_record(r.record, tokenizer, window) for r in heldout.records]
    # Position 0 is never predicted: a record needs a labelled token after it.
    scored = [
        i
        for i, example in enumerate(encoded)
        if any(label != IGNORE for label in example.labels[1:])
    ]
    sums = token_nlls(
        model,
        tokenizer,
        [(encoded[i].input_ids, encoded[i].labels) for i in scored],
        batch_size,
        progress,
    )
    items: list[dict[str, Any]] = []
    for index, (nll_sum, n_tokens) in zip(scored, sums, strict=True):
        nll = nll_sum / n_tokens
        items.append(
            {
                "id": heldout.records[index].id,
                "nll_per_token": nll,
                "nll_sum": nll_sum,
                "n_tokens": n_tokens,
            }
        )
    total_tokens = sum(item["n_tokens"] for item in items)
    total_nll = math.fsum(item["nll_sum"] for item in items)
    nll = total_nll / total_tokens if total_tokens else 0.0
    per_item = [item["nll_per_token"] for item in items]
    return {
        "perplexity": math.exp(nll),
        "nll_per_token": nll,
        "nll_per_token_stderr": mean_stderr(per_item),
        "lower_is_better": list(LOWER_IS_BETTER),
        "n_tokens": total_tokens,
        "n_items": len(items),
        "n_skipped": len(heldout.records) - len(items),  # nothing left to score after cutting
        "items": items,
    }


def token_nlls(
    model: Any,
    tokenizer: Any,
    sequences: Sequence[tuple[list[int], list[int]]],
    batch_size: int,
    progress: Progress | None = None,
) -> list[tuple[float, int]]:
    """(sum of -log P(token) over labelled positions, their count) per (ids, labels) pair."""
    import torch

    from tuneloop.evaluation import lm

    order = sorted(range(len(sequences)), key=lambda i: (-len(sequences[i][0]), i))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    batches = _token_batches([len(sequences[i][0]) for i in order], batch_size)
    done = 0
    with torch.inference_mode():
        for batch in batches:
            rows = [order[i] for i in batch]
            ids, mask, positions = lm._left_pad(
                [sequences[r][0] for r in rows], lm.pad_id(tokenizer)
            )
            logits = model(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                position_ids=positions.to(model.device),
            ).logits
            width = ids.shape[1]
            for row, index in enumerate(rows):
                input_ids, labels = sequences[index]
                offset = width - len(input_ids)
                # Logits at position t predict token t + 1.
                logprobs = torch.log_softmax(logits[row, offset:-1].double(), dim=-1).cpu()
                targets = torch.tensor(labels[1:])
                keep = targets != IGNORE
                picked = logprobs[keep].gather(-1, targets[keep].unsqueeze(-1))
                results[index] = (-float(picked.sum()), int(keep.sum()))
            done += len(rows)
            if progress:
                progress(done, len(sequences))
    return results


def _token_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive batches (lengths sorted longest first) within the size and token budget."""
    batches: list[list[int]] = []
    for index in range(len(lengths)):
        if batches:
            current = batches[-1]
            width = lengths[current[0]]
            if len(current) < batch_size and width * (len(current) + 1) <= MAX_BATCH_TOKENS:
                current.append(index)
                continue
        batches.append([index])
    return batches
