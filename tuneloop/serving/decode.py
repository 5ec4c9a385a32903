"""A lean batched decode loop: one prefill, then one token per step with the KV cache reused.

Why not ``model.generate`` per batch: its per-step machinery (logits processors, stopping
criteria objects, cache bookkeeping for every row until the longest one ends) costs more than
a small model's forward pass on CPU. This loop does only what serving needs:

- rows are left-padded so every row's next token sits in the last column; position ids
  count real tokens only (as ``generate`` computes them), so a row's logits do not depend
  on the padding its batch-mates forced on it;
- per row: greedy or temperature/top-p sampling (with its own seeded RNG, so a seed
  reproduces the same text batched or alone), ``max_new_tokens``, EOS and stop strings;
- a finished row leaves the batch at once (its cache rows are dropped) and ``on_done`` is
  called for it, so a short answer is not held back by a long one.

Greedy rows give exactly the tokens ``model.generate(do_sample=False)`` gives (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import DynamicCache

FinishReason = Literal["eos", "length", "stop"]
BASE_ADAPTER = "__base__"
"""peft's name for "no adapter" in a mixed batch."""


@dataclass(frozen=True)
class DecodeRow:
    """One sequence to continue: its prompt token ids and its own generation settings."""

    prompt_ids: Sequence[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    adapter: str | None = None
    """The peft adapter slot of this row on a multi-adapter model (None: the base)."""


@dataclass(frozen=True)
class DecodeResult:
    tokens: list[int]
    """The generated ids, without a final EOS."""
    finish_reason: FinishReason


@dataclass
class _Active:
    index: int
    row: DecodeRow
    rng: torch.Generator | None
    tokens: list[int]


def decode(
    model: Any,
    rows: Sequence[DecodeRow],
    *,
    pad_token_id: int,
    eos_token_ids: Collection[int],
    detokenize: Callable[[list[int]], str],
    on_done: Callable[[int, DecodeResult], None] | None = None,
    mixed_adapters: bool = False,
) -> list[DecodeResult]:
    """Generate every row; results in the order of ``rows``. ``detokenize`` is used only
    for rows with stop strings. ``mixed_adapters``: ``model`` is a peft model with several
    adapters and each row names its own. Call under ``torch.inference_mode()``."""
    if not rows:
        return []
    device = model.device
    width = max(len(row.prompt_ids) for row in rows)
    input_ids = torch.tensor(
        [[pad_token_id] * (width - len(r.prompt_ids)) + list(r.prompt_ids) for r in rows],
        device=device,
    )
    mask = torch.tensor(
        [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows],
        device=device,
    )
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache = DynamicCache(config=model.config)
    active = [_Active(i, row, _row_rng(row), []) for i, row in enumerate(rows)]
    results: list[DecodeResult | None] = [None] * len(rows)
    eos = frozenset(eos_token_ids)

    logits = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
        **adapter_arguments([state.row for state in active], mixed_adapters),
    ).logits[:, -1, :]
    while True:
        chosen = _choose(logits, active)
        keep: list[int] = []
        for slot, (state, token) in enumerate(zip(active, chosen, strict=True)):
            reason = _finish_reason(state, token, eos, detokenize)
            if reason is None:
                keep.append(slot)
                continue
            result = DecodeResult(state.tokens, reason)
            results[state.index] = result
            if on_done is not None:
                on_done(state.index, result)
        if not keep:
            break
        next_ids = torch.tensor([[chosen[slot]] for slot in keep], device=device)
        if len(keep) < len(active):  # drop finished rows from the batch and its cache
            selected = torch.tensor(keep, device=device)
            cache.batch_select_indices(selected)
            mask, positions = mask[selected], positions[selected]
            active = [active[slot] for slot in keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
        positions = positions[:, -1:] + 1
        logits = model(
            input_ids=next_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            **adapter_arguments([state.row for state in active], mixed_adapters),
        ).logits[:, -1, :]
    return [result for result in results if result is not None]


def adapter_arguments(rows: Sequence[DecodeRow], mixed_adapters: bool) -> dict[str, Any]:
    """The forward's ``adapter_names`` (peft's mixed-batch LoRA: one adapter per row,
    ``__base__`` for none) when the model holds several adapters; else nothing."""
    if not mixed_adapters:
        return {}
    return {"adapter_names": [row.adapter or BASE_ADAPTER for row in rows]}


def _row_rng(row: DecodeRow) -> torch.Generator | None:
    if row.temperature <= 0 or row.seed is None:
        return None
    rng = torch.Generator()
    rng.manual_seed(row.seed)
    return rng


def _choose(logits: torch.Tensor, active: Sequence[_Active]) -> list[int]:
    """The next token of every active row: argmax for greedy rows, a draw for the others."""
    greedy: list[int] = logits.argmax(dim=-1).tolist()
    for slot, state in enumerate(active):
        if state.row.temperature > 0:
            greedy[slot] = _sample(logits[slot], state.row, state.rng)
    return greedy


def _sample(logits: torch.Tensor, row: DecodeRow, rng: torch.Generator | None) -> int:
    scores = logits.float() / row.temperature
    if row.top_p < 1.0:
        # Nucleus: keep the most likely tokens whose mass reaches top_p (at least one).
        ordered, order = scores.sort(descending=True)
        mass = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = mass - ordered.softmax(dim=-1) >= row.top_p
        scores = scores.scatter(0, order, ordered.masked_fill(drop, float("-inf")))
    probabilities = scores.softmax(dim=-1)
    return int(torch.multinomial(probabilities.cpu(), 1, generator=rng).item())


def _finish_reason(
    state: _Active,
    token: int,
    eos: frozenset[int],
    detokenize: Callable[[list[int]], str],
) -> FinishReason | None:
    """Append ``token`` unless it is EOS; say why the row ends now, or None."""
    if token in eos:
        return "eos"
    state.tokens.append(token)
    if state.row.stop and any(stop in detokenize(state.tokens) for stop in state.row.stop):
        return "stop"
    if len(state.tokens) >= state.row.max_new_tokens:
        return "length"
    return None
