"""Batched log-likelihoods and greedy generation with a Hugging Face causal LM.

Log-likelihoods follow lm-evaluation-harness's ``HFLM``: context and continuation are
encoded without special tokens, trailing whitespace of the context moves to the
continuation, the continuation is ``encode(context + continuation)[len(encode(context)):]``
and inputs longer than the model's window are cut from the left. Requests with identical
model input share one forward pass (MMLU's four one-token answers need one pass per
question). Inputs are sorted by length (longest first) and cut into the batches of least
cost under a cost model of padding against passes (``length_batches``). Rows are
right-padded and run under the causal mask alone, so a padded row scores exactly as it
would alone (up to float rounding), and only the positions predicting a continuation go
through the LM head. Inputs sharing a prompt prefix (MMLU's subject header and few-shot
examples) encode it once and continue from its KV cache, in the groups ``prefix_groups``
finds worth it under the cost model ``sharing_gain``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


# Prefix sharing when a call does not say: None lets ``sharing_pays`` decide per group.
SHARE_PREFIXES: bool | None = None


@torch.inference_mode()
def loglikelihoods_greedy(
    model: Any,
    tokenizer: Any,
    requests: Sequence[tuple[str, str]],
    batch_size: int,
    progress: Progress | None = None,
    share_prefixes: bool | None = None,
) -> list[tuple[float, bool]]:
    """(log P(continuation | context), is the continuation the greedy one) per request.

    ``share_prefixes``: encode a prompt prefix shared by several inputs once and continue
    from its KV cache (``prefix_groups``). None (default): ``SHARE_PREFIXES``, itself None:
    per group, where the cost model ``sharing_pays`` expects it to be faster; True: every
    group of two or more inputs; False: never. The
    grouping depends on the inputs only, never on ``batch_size``.
    """
    window = max_length(model)
    # Model input (without the continuation's last token) -> [(request index, cont ids)].
    groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    encoded: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for index, request in enumerate(requests):
        if request not in encoded:  # the same prompt comes back once per choice
            encoded[request] = encode_pair(tokenizer, *request)
        context_ids, cont_ids = encoded[request]
        if not cont_ids:
            raise ValueError(f"continuation {request[1]!r} encodes to no tokens")
        full = (context_ids + cont_ids)[-(window + 1) :]
        groups.setdefault(tuple(full[:-1]), []).append((index, cont_ids))
    results: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
    parts = _model_parts(model)
    done = 0
    tails = {key: max(len(cont) for _, cont in reqs) for key, reqs in groups.items()}
    if share_prefixes is None:
        share_prefixes = SHARE_PREFIXES
    share = parts is not None and share_prefixes is not False
    for prefix_length, keys in prefix_groups(tails, share, always=bool(share_prefixes)):
        prefix_cache = None
        if prefix_length:
            assert parts is not None
            prefix_cache = _encode_prefix(parts[0], keys[0][:prefix_length])
        # Longest suffix first, so memory problems show at once; ties by tokens: stable.
        keys = sorted(keys, key=lambda key: (-len(key), key))
        for indexes in length_batches([len(key) - prefix_length for key in keys], batch_size):
            batch = [keys[i] for i in indexes]
            keep = max(len(cont) for key in batch for _, cont in groups[key])
            logprobs = _batch_logprobs(model, parts, batch, prefix_length, prefix_cache, keep)
            for row, key in enumerate(batch):
                for index, cont_ids in groups[key]:
                    # Row ``row`` holds the log-probs predicted at the last ``keep`` input
                    # positions; the continuation is predicted by the last len(cont) ones.
                    rows = logprobs[row, keep - len(cont_ids) :]
                    targets = torch.tensor(cont_ids).unsqueeze(-1)
                    greedy = bool((rows.argmax(-1) == targets.squeeze(-1)).all())
                    results[index] = (float(rows.gather(-1, targets).sum()), greedy)
            done += len(batch)
            if progress:
                progress(done, len(groups))
    return results


# A prompt prefix shorter than this is recomputed per row: a cache copy costs more.
MIN_SHARED_PREFIX = 8

# The cost model of a shared prefix, in units of "one token through the decoder".
# Sharing a P-token prefix over a group of n inputs computes the prefix once instead of n
# times, but each of the n rows then reads (and, in DynamicCache, copies) the P cached
# positions in every layer, and the group's suffixes form batches of their own. Measured
# on CPU (SmolLM2-135M, float32, 2 threads; suffix 100 tokens, prefix 15-500, 1-8 rows):
# a row continuing from a cached prefix costs ~0.1-0.2 tokens per prefix token more than a
# row of the suffix alone, and a group's extra forward passes (the prefix's own, a partly
# filled last batch) ~30-60 tokens' worth. Both are taken at the high end, so a group
# shares only when it is clearly faster than plain batching. (Measured again at 1 thread,
# CPU time: ~0.07 tokens per prefix token at P = 400, 3-4 rows of 70; 8 rows of 76 sharing
# 11 and 15 tokens ran 8% and 15% faster than unshared.)
KV_ROW_COST = 0.2
GROUP_OVERHEAD_TOKENS = 64


def sharing_gain(prefix_length: int, rows: int) -> float:
    """Decoder tokens saved by encoding a ``prefix_length``-token prefix once for ``rows`` inputs.

    Saved: (rows - 1) * prefix_length; paid: rows * prefix_length * ``KV_ROW_COST`` plus
    ``GROUP_OVERHEAD_TOKENS``. Not positive: sharing would not be faster.
    """
    if rows < 2 or prefix_length < MIN_SHARED_PREFIX:
        return 0.0
    saved = (rows - 1) * prefix_length
    return saved - rows * prefix_length * KV_ROW_COST - GROUP_OVERHEAD_TOKENS


def sharing_pays(prefix_length: int, rows: int) -> bool:
    """Whether encoding a ``prefix_length``-token prefix once for ``rows`` inputs is faster."""
    return sharing_gain(prefix_length, rows) > 0


class _Interval:
    """Keys ``start``..``end`` (sorted) sharing exactly ``depth`` leading tokens; a tree node."""

    __slots__ = ("children", "depth", "end", "share", "start", "value")

    def __init__(self, depth: int, start: int) -> None:
        self.depth = depth
        self.start = start
        self.end = start
        self.children: list[_Interval] = []
        self.value = 0.0  # the best gain within the interval
        self.share = False  # whether the best is one group over the whole interval


def prefix_groups(
    tails: Mapping[tuple[int, ...], int], share: bool = True, always: bool = False
) -> list[tuple[int, list[tuple[int, ...]]]]:
    """Inputs grouped by a shared leading prefix: ``[(prefix length, keys)]``.

    Keys are sorted by their tokens, so inputs starting alike (MMLU's per-subject header,
    a task's few-shot examples) are neighbours, and the runs of keys sharing at least d
    leading tokens nest into a tree (all of MMLU shares the header's first 11 tokens at
    0 shot, each subject ~15, and at few shot each subject its solved examples). The
    groups are the set of disjoint runs with the largest total ``sharing_gain``: a run is
    one group or the best split of its sub-runs, whichever gains more (with ``always``,
    the gain is the decoder tokens saved, (n - 1) * P). ``tails`` maps each key to the
    number of its last positions whose logits are needed: those stay out of the prefix.
    Keys in no group are batched together, unshared, as one last group of prefix 0.
    Linear in the number of keys (after sorting); the result depends on ``tails`` only.
    """
    ordered = sorted(tails)
    if not share or not ordered:
        return [(0, ordered)] if ordered else []

    def gain(depth: int, rows: int) -> float:
        if always:
            return float((rows - 1) * depth) if depth >= MIN_SHARED_PREFIX and rows > 1 else 0.0
        return sharing_gain(depth, rows)

    def close(node: _Interval, end: int) -> None:
        node.end = end
        split = sum(child.value for child in node.children)
        whole = gain(node.depth, end - node.start + 1)
        node.share = whole > 0 and whole >= split
        node.value = whole if node.share else split

    # Bottom-up construction of the tree of runs (the LCP intervals of the sorted keys),
    # from the prefix each key shares with the one before it, short of either one's tail.
    root = _Interval(0, 0)
    stack = [root]
    for index in range(1, len(ordered) + 1):
        if index < len(ordered):
            before, key = ordered[index - 1], ordered[index]
            limit = min(len(before) - tails[before], len(key) - tails[key])
            depth = min(_common_prefix(before, key), limit)
        else:
            depth = -1  # closes every open run
        start = index - 1
        last: _Interval | None = None
        while stack and depth < stack[-1].depth:
            last = stack.pop()
            close(last, index - 1)
            start = last.start
            if stack and depth <= stack[-1].depth:
                stack[-1].children.append(last)
                last = None
        if depth > (stack[-1].depth if stack else -1) and index < len(ordered):
            node = _Interval(depth, start)
            if last is not None:
                node.children.append(last)
            stack.append(node)

    kept: list[tuple[int, list[tuple[int, ...]]]] = []
    grouped: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if node.share:
            kept.append((node.depth, ordered[node.start : node.end + 1]))
            grouped.update(range(node.start, node.end + 1))
        else:
            pending.extend(node.children)
    kept.sort(key=lambda group: group[1][0])
    plain = [key for index, key in enumerate(ordered) if index not in grouped]
    return kept + ([(0, plain)] if plain else [])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _model_parts(model: Any) -> tuple[Any, Any] | None:
    """(decoder, LM head) when the logits are exactly ``head(decoder(...))``, else None.

    Models that post-process logits (soft-capping, scaling) or have no separate decoder are
    scored through their full forward, without prefix sharing.
    """
    config = getattr(model, "config", None)
    if any(
        getattr(config, attr, None) not in (None, 1.0)
        for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling")
    ):
        return None
    if getattr(config, "sliding_window", None) and not getattr(config, "use_sliding_window", 1):
        pass  # declared but disabled (Qwen2): a plain causal decoder
    elif getattr(config, "sliding_window", None):
        return None
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None or decoder is model:
        return None
    return decoder, head


def _encode_prefix(decoder: Any, prefix: Sequence[int]) -> Any:
    """The KV cache of ``prefix`` (batch 1)."""
    ids = torch.tensor([list(prefix)], dtype=torch.long, device=decoder.device)
    return decoder(input_ids=ids, use_cache=True).past_key_values


def _expanded_cache(prefix_cache: Any, rows: int) -> Any:
    """A new cache holding ``prefix_cache`` for ``rows`` rows (a forward appends to it)."""
    from transformers import DynamicCache

    layers = [
        (layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1))
        for layer in prefix_cache.layers
    ]
    return DynamicCache(ddp_cache_data=layers)


def _batch_logprobs(
    model: Any,
    parts: tuple[Any, Any] | None,
    keys: Sequence[tuple[int, ...]],
    prefix_length: int,
    prefix_cache: Any,
    keep: int,
) -> torch.Tensor:
    """Log-probs (batch x keep x vocabulary, float32, CPU) at each row's last ``keep`` inputs.

    Rows are right-padded and run without an attention mask: under a causal mask padding
    after a row's last token cannot change it, and SDPA keeps its fast causal path. Only
    the needed positions go through the LM head (a 49k-vocabulary head costs a quarter of
    a small model's forward).
    """
    suffixes = [list(key[prefix_length:]) for key in keys]
    width = max(len(s) for s in suffixes)
    ids = torch.zeros((len(suffixes), width), dtype=torch.long)
    for row, suffix in enumerate(suffixes):
        ids[row, : len(suffix)] = torch.tensor(suffix, dtype=torch.long)
    # Per row, the last ``keep`` real positions (clamped at 0; unused when clamped).
    last = torch.tensor([len(s) for s in suffixes]).unsqueeze(-1)
    positions = (last - keep + torch.arange(keep)).clamp(min=0)
    if parts is None:
        logits = model(input_ids=ids.to(model.device)).logits
        picked = logits.gather(
            1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]).to(logits.device)
        )
    else:
        decoder, head = parts
        cache = _expanded_cache(prefix_cache, len(keys)) if prefix_cache is not None else None
        hidden = decoder(
            input_ids=ids.to(decoder.device), past_key_values=cache, use_cache=cache is not None
        ).last_hidden_state
        index = positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]).to(hidden.device)
        picked = head(hidden.gather(1, index))
    return torch.log_softmax(picked.float(), dim=-1).cpu()


# The cost of one forward pass, in units of "one token through the decoder": its rows times
# its width (padding is computed like any token) plus a fixed cost per pass. Measured on CPU
# (SmolLM2-135M, float32, 1 thread; rows of 40 and 87 tokens, 1-8 rows): a pass costs
# ~1.7 ms per token plus ~70-80 ms, i.e. ~40-45 tokens; more with 2 threads, where every
# operation of a pass synchronizes the threads.
BATCH_OVERHEAD_TOKENS = 48


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive batches of indexes into ``lengths`` (sorted longest first), of least cost.

    A batch of rows i..j-1 costs (j - i) * lengths[i] (each row padded to the longest) plus
    ``BATCH_OVERHEAD_TOKENS``; dynamic programming finds the split into batches of at most
    ``batch_size`` rows with the least total cost, so a few padded positions are accepted
    where they save a pass and a pass is added where it saves more padding. Ties go to the
    larger batch first (the longest rows first, so memory problems show at once). Depends
    on ``lengths`` and ``batch_size`` only.
    """
    n = len(lengths)
    best = [float("inf")] * n + [0.0]  # best[i]: least cost of rows i..n-1
    cut = [n] * (n + 1)  # the end of the first batch of that split
    for first in range(n - 1, -1, -1):
        for end in range(min(n, first + batch_size), first, -1):
            cost = (end - first) * lengths[first] + BATCH_OVERHEAD_TOKENS + best[end]
            if cost < best[first]:
                best[first], cut[first] = cost, end
    batches: list[list[int]] = []
    first = 0
    while first < n:
        batches.append(list(range(first, cut[first])))
        first = cut[first]
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
