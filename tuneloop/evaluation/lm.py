"""Batched log-likelihoods and greedy generation with a Hugging Face causal LM.

Log-likelihoods follow lm-evaluation-harness's ``HFLM``: context and continuation are
encoded without special tokens, trailing whitespace of the context moves to the
continuation, the continuation is ``encode(context + continuation)[len(encode(context)):]``
and inputs longer than the model's window are cut from the left. Requests are sorted by
length (longest first) and requests with identical model input share one forward pass
(MMLU's four one-token answers need one pass per question). Rows are left-padded with
explicit position ids, so only the last few positions' logits are computed and a padded
row scores exactly as it would alone (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria

DEFAULT_MAX_LENGTH = 2048
Progress = Callable[[int, int], None]


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's ``_encode_pair``: (context tokens, continuation tokens)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    if not context_ids:
        # An empty context conditions on a single BOS/EOS token, as lm-eval does.
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else None
        prefix = prefix if prefix is not None else tokenizer.eos_token_id
        return [prefix], whole
    return context_ids, whole[len(context_ids) :]


def max_length(model: Any) -> int:
    """The model's context window (lm-eval reads the same config attributes)."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_LENGTH


def pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def loglikelihoods(
    model: Any,
    tokenizer: Any,
    requests: Sequence[tuple[str, str]],
    batch_size: int,
    progress: Progress | None = None,
) -> list[float]:
    """log P(continuation | context) for each ``(context, continuation)`` request."""
    return [ll for ll, _ in loglikelihoods_greedy(model, tokenizer, requests, batch_size, progress)]


@torch.inference_mode()
def loglikelihoods_greedy(
    model: Any,
    tokenizer: Any,
    requests: Sequence[tuple[str, str]],
    batch_size: int,
    progress: Progress | None = None,
) -> list[tuple[float, bool]]:
    """(log P(continuation | context), is the continuation the greedy one) per request."""
    window = max_length(model)
    # Model input (without the continuation's last token) -> [(request index, cont ids)].
    groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for index, (context, continuation) in enumerate(requests):
        context_ids, cont_ids = encode_pair(tokenizer, context, continuation)
        if not cont_ids:
            raise ValueError(f"continuation {continuation!r} encodes to no tokens")
        full = (context_ids + cont_ids)[-(window + 1) :]
        groups.setdefault(tuple(full[:-1]), []).append((index, cont_ids))
    # Longest first (as lm-eval) so memory problems show at once; ties by tokens: stable.
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[0]), kv[0]))
    results: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
    device = model.device
    batches = length_batches([len(key) for key, _ in ordered], batch_size)
    done = 0
    for indexes in batches:
        batch = [ordered[i] for i in indexes]
        keep = max(len(cont) for _, reqs in batch for _, cont in reqs)
        input_ids, mask, positions = _left_pad([list(k) for k, _ in batch], pad_id(tokenizer))
        logits = model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=keep,
        ).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, (_, reqs) in enumerate(batch):
            for index, cont_ids in reqs:
                # Logits at position t predict token t+1: the continuation's tokens are
                # predicted by the last len(cont) positions of the input.
                rows = logprobs[row, keep - len(cont_ids) :]
                targets = torch.tensor(cont_ids).unsqueeze(-1)
                greedy = bool((rows.argmax(-1) == targets.squeeze(-1)).all())
                results[index] = (float(rows.gather(-1, targets).sum()), greedy)
        done += len(batch)
        if progress:
            progress(done, len(ordered))
    return results


# Padding is wasted compute (on CPU it is all of the cost): a batch grows only while its
# padded size stays within this factor of its real tokens.
MAX_PADDING_RATIO = 1.25


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive batches of indexes into ``lengths`` (sorted longest first)."""
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index, length in enumerate(lengths):
        if current:
            width = lengths[current[0]]
            padded = width * (len(current) + 1)
            if len(current) >= batch_size or padded > MAX_PADDING_RATIO * (real + length):
                batches.append(current)
                current, real = [], 0
        current.append(index)
        real += length
    if current:
        batches.append(current)
    return batches


def _left_pad(
    sequences: list[list[int]], pad: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    positions = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        offset = width - len(seq)
        ids[row, offset:] = torch.tensor(seq, dtype=torch.long)
        mask[row, offset:] = 1
        positions[row, offset:] = torch.arange(len(seq))
    return ids, mask, positions


@torch.inference_mode()
def generate_greedy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    stop: Sequence[str],
    batch_size: int,
) -> list[str]:
    """Greedy continuations of ``prompts``, each cut at the first stop sequence."""
    from transformers import GenerationConfig, StoppingCriteriaList

    window = max_length(model)
    pad = pad_id(tokenizer)
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
    )
    encoded = [encode(tokenizer, p)[-max(1, window - max_new_tokens) :] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    outputs = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        input_ids, mask, _ = _left_pad([encoded[i] for i in batch], pad)
        criteria = StoppingCriteriaList([_StopSequences(tokenizer, input_ids.shape[1], stop)])
        generated = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=mask.to(model.device),
            generation_config=config,
            stopping_criteria=criteria,
        )
        for row, index in enumerate(batch):
            new_tokens = generated[row, input_ids.shape[1] :].tolist()
            # Finished rows are filled with padding after EOS; drop both.
            if tokenizer.eos_token_id in new_tokens:
                new_tokens = new_tokens[: new_tokens.index(tokenizer.eos_token_id)]
            text = tokenizer.decode(new_tokens, skip_special_tokens=True)
            outputs[index] = cut_at_stop(text, stop)
    return outputs


class _StopSequences(StoppingCriteria):
    """Stops a row once its decoded new text contains a stop sequence.

    transformers' ``stop_strings`` precomputes tables over the whole vocabulary (seconds
    per call for a 49k vocabulary); decoding a few new tokens per step is cheaper here.
    """

    def __init__(self, tokenizer: Any, prompt_length: int, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.stop = tuple(stop)

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if not self.stop:
            return done
        for row in range(input_ids.shape[0]):
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :].tolist())
            done[row] = any(sequence in text for sequence in self.stop)
        return done


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest stop sequence."""
    cut = len(text)
    for sequence in stop:
        found = text.find(sequence)
        if found != -1:
            cut = min(cut, found)
    return text[:cut]
