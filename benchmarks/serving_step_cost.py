"""Serving step cost: what one decode step costs at batch sizes 1..16, and our engine's share.

The ceiling of batching on a machine is set by how a decode step's time grows with the batch:
a one-at-a-time loop pays t(1) per token, a batch of 16 pays t(16) for 16 tokens, so no
batching scheduler can beat the loop by more than ``16 x t(1) / t(16)``. This script measures
that with bare model forwards (the model's forward with ``past_key_values``, float32 as the
server loads it, on a realistic KV cache: a chat prompt of about 30 tokens plus 24 generated
tokens), at batch sizes 1, 2, 4, 8 and 16, two ways:

- ``stock``: transformers' ``DynamicCache`` (what ``model.generate`` uses; it concatenates the
  whole cache every step);
- ``in place``: the cache our engine keeps (``continuous._SlotLayer``: buffers with spare
  columns, written in place).

It also times ``model.generate``'s own cost per decoded token at batch 1 (what the baseline
of ``serving_throughput.py`` pays per token), one prefill forward of 1 and of 16 prompts, and
our engine's full step (``ContinuousBatch.step`` with 16 active rows, the benchmark's
prompts: the forward plus building its inputs, choosing tokens and the per-row bookkeeping)
against the bare forward on a twin batch's cache: the difference is our overhead per step.
Every measurement runs in interleaved turns, and the engine's and the bare steps alternate
step by step, so a change in machine load hits them alike::

    .venv/bin/python benchmarks/serving_step_cost.py --threads 1   # SmolLM2-135M
    .venv/bin/python benchmarks/serving_step_cost.py --tiny        # a tiny random model

``--threads`` sets torch's intra-op threads (0: torch's default, as ``serving_throughput.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from serving_throughput import CONTEXT, QUESTIONS, load  # noqa: E402
from transformers import DynamicCache  # noqa: E402

from tuneloop.serving.continuous import _SPARE_COLUMNS, ContinuousBatch, _SlotLayer  # noqa: E402
from tuneloop.serving.engine import GenerationRequest  # noqa: E402

BATCH_SIZES = (1, 2, 4, 8, 16)
GENERATED = 24  # tokens already generated when the timed steps start


def prompt_cache(generator: Any, text: str) -> tuple[list[Any], int, int]:
    """The per-layer (keys, values) of ``text``'s prompt plus ``GENERATED`` greedy tokens,
    the cache length, and the next input token."""
    model, tokenizer = generator.model, generator.tokenizer
    ids = tokenizer.encode(text, add_special_tokens=False)
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True).logits
    for _ in range(GENERATED):
        token = int(logits[0, -1].argmax())
        logits = model(input_ids=torch.tensor([[token]]), past_key_values=cache).logits
    layers = [(layer.keys, layer.values) for layer in cache.layers]  # type: ignore[union-attr]
    return layers, cache.get_seq_length(), int(logits[0, -1].argmax())


def bare_steps(
    model: Any, layers: list[Any], length: int, token: int, batch: int, *, in_place: bool
) -> Callable[[], list[float]]:
    """A function timing ``steps`` bare forwards of ``batch`` rows from ``length`` columns."""
    keys = [k.expand(batch, -1, -1, -1).contiguous() for k, _ in layers]
    values = [v.expand(batch, -1, -1, -1).contiguous() for _, v in layers]
    input_ids = torch.full((batch, 1), token)

    def fresh_cache() -> DynamicCache:
        cache = DynamicCache(config=model.config)
        if in_place:
            slots = []
            for k, v in zip(keys, values, strict=True):
                wide_k = k.new_zeros((*k.shape[:2], length + _SPARE_COLUMNS, k.shape[3]))
                wide_v = v.new_zeros((*v.shape[:2], length + _SPARE_COLUMNS, v.shape[3]))
                wide_k[:, :, :length], wide_v[:, :, :length] = k, v
                slots.append(_SlotLayer(wide_k, wide_v, length))
            cache.layers = slots  # type: ignore[assignment]
        else:
            for number, (k, v) in enumerate(zip(keys, values, strict=True)):
                cache.update(k.clone(), v.clone(), number)
        return cache

    def run(steps: int = 8) -> list[float]:
        cache = fresh_cache()
        mask = torch.ones((batch, length), dtype=torch.long)
        times = []
        for step in range(steps):
            mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=-1)
            positions = torch.full((batch, 1), length + step)
            begun = time.perf_counter()
            model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            times.append(time.perf_counter() - begun)
        return times

    return run


def generate_runner(generator: Any, text: str) -> Callable[[], list[float]]:
    """A function timing ``model.generate``'s cost per decoded token at batch 1, as
    (t(1 + n new tokens) - t(1 new token)) / n: the prefill cancels out."""
    model, tokenizer = generator.model, generator.tokenizer
    encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def timed(new: int) -> float:
        begun = time.perf_counter()
        model.generate(
            **encoded,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
        return time.perf_counter() - begun

    def run() -> list[float]:
        one, many = timed(1), timed(1 + GENERATED)
        return [(many - one) / GENERATED]

    return run


def prefill_runner(generator: Any, texts: list[str]) -> Callable[[], list[float]]:
    """A function timing one prefill forward of ``texts`` (left-padded, as ``admit`` does)."""
    model, tokenizer = generator.model, generator.tokenizer
    rows = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    width = max(len(ids) for ids in rows)
    input_ids = torch.tensor([[generator._pad_id] * (width - len(ids)) + ids for ids in rows])
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows])
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)

    def run() -> list[float]:
        begun = time.perf_counter()
        model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=DynamicCache(config=model.config),
            use_cache=True,
            logits_to_keep=1,
        )
        return [time.perf_counter() - begun]

    return run


def _running_batch(
    generator: Any, requests: list[GenerationRequest]
) -> Callable[[], ContinuousBatch]:
    """A 16-row ``ContinuousBatch`` after ``GENERATED`` tokens, and a function putting it
    back there (the steps after it write the next columns in place: resetting the lengths,
    the mask and each row's tokens undoes them)."""
    batch = ContinuousBatch(
        generator.model,
        pad_token_id=generator._pad_id,
        eos_token_ids=(),  # no row may end during the timing: the batch stays at 16 rows
        detokenize=generator._detokenize,
        max_batch_size=16,
    )
    rows = [generator.prepare(request)[1] for request in requests]
    batch.admit([batch.sequence(row, lambda result: None) for row in rows])
    for _ in range(GENERATED - 1):
        batch.step()
    assert batch._cache is not None
    layers = [layer for layer in batch._cache.layers if isinstance(layer, _SlotLayer)]
    length, mask = layers[0].length, batch._mask
    saved = [(list(s.tokens), s.next_token) for s in batch.active]

    def reset() -> ContinuousBatch:
        for layer in layers:
            layer.length = length
            layer._expose()
        batch._mask = mask
        for state, (tokens, next_token) in zip(batch.active, saved, strict=True):
            state.tokens[:], state.next_token = tokens, next_token
        return batch

    return reset


def engine_runner(
    generator: Any, requests: list[GenerationRequest]
) -> Callable[[], list[tuple[float, float]]]:
    """A function timing 8 pairs of (``ContinuousBatch.step`` with 16 rows, the bare model
    forward on a twin batch's cache): step by step, so both see the same machine load."""
    model = generator.model
    ours, twin = _running_batch(generator, requests), _running_batch(generator, requests)

    def run(steps: int = 8) -> list[tuple[float, float]]:
        batch, other = ours(), twin()
        assert other._cache is not None
        mask, pairs = other._mask, []
        input_ids = torch.tensor([[s.next_token] for s in other.active])
        positions = mask.sum(dim=-1, keepdim=True)
        for step in range(steps):
            begun = time.perf_counter()
            batch.step()
            engine = time.perf_counter() - begun
            mask = torch.cat([mask, mask.new_ones((16, 1))], dim=-1)
            begun = time.perf_counter()
            model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions + step,
                past_key_values=other._cache,
                use_cache=True,
            )
            pairs.append((engine, time.perf_counter() - begun))
        assert len(batch.active) == 16
        return pairs

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="a tiny random model, not SmolLM2")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=5, help="timed turns of 8 steps (5)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = load(args.tiny)
    model = generator.model
    questions = [CONTEXT * (i % 3 == 2) + QUESTIONS[i % len(QUESTIONS)] for i in range(16)]
    requests = [  # the serving benchmark's prompts; no row ends during the timing
        GenerationRequest(
            messages=({"role": "user", "content": question},),
            max_new_tokens=2 * GENERATED,  # the timed steps restart at GENERATED
        )
        for question in questions
    ]
    text = generator.prompt_text(requests[0])
    with torch.inference_mode():
        layers, length, token = prompt_cache(generator, text)
        print(
            f"model {'tiny' if args.tiny else 'smollm2-135m-instruct'} "
            f"({next(model.parameters()).dtype}), torch threads {torch.get_num_threads()}, "
            f"KV cache {length} columns ({length - GENERATED}-token prompt + {GENERATED}"
            f" generated), median of {args.repeats} x 8 steps",
            flush=True,
        )
        runners: dict[Any, Callable[[], list[float]]] = {
            (batch, in_place): bare_steps(model, layers, length, token, batch, in_place=in_place)
            for batch in BATCH_SIZES
            for in_place in (False, True)
        }
        runners["generate"] = generate_runner(generator, text)
        runners["prefill 1"] = prefill_runner(generator, [text])
        runners["prefill 16"] = prefill_runner(generator, [text] * 16)
        engine_pairs = engine_runner(generator, requests)
        for run in runners.values():  # warm-up
            run()
        engine_pairs()
        # Interleaved turns: a change in machine load hits every measurement alike.
        times: dict[Any, list[float]] = {key: [] for key in runners}
        pairs: list[tuple[float, float]] = []
        for _ in range(args.repeats):
            for key, run in runners.items():
                times[key].extend(run())
            pairs.extend(engine_pairs())
    costs = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"\n{'batch':>5} {'stock ms/step':>14} {'tok/s':>8} {'in place ms/step':>17} {'tok/s':>8}"
    )
    for batch in BATCH_SIZES:
        stock, slot = costs[batch, False], costs[batch, True]
        print(
            f"{batch:>5} {stock * 1000:>14.1f} {batch / stock:>8.1f}"
            f" {slot * 1000:>17.1f} {batch / slot:>8.1f}"
        )
    t1 = costs[1, False]
    print(
        f"\nceiling 16 x t(1) / t(16), stock cache both: {16 * t1 / costs[16, False]:.2f}x;"
        f" t(16) with the in-place cache: {16 * t1 / costs[16, True]:.2f}x"
    )
    print(
        f"model.generate at batch 1: {costs['generate'] * 1000:.1f} ms per decoded token"
        f" ({costs['generate'] / t1:.2f}x the bare stock step); against it the 16-row in-place step"
        f" gains at most {16 * costs['generate'] / costs[16, True]:.2f}x"
    )
    prefill_gain = 16 * costs["prefill 1"] / costs["prefill 16"]
    print(
        f"prefill: one prompt {costs['prefill 1'] * 1000:.1f} ms, 16 prompts in one forward"
        f" {costs['prefill 16'] * 1000:.1f} ms ({prefill_gain:.2f}x the prompts per second)"
    )
    engine = statistics.median(step for step, _ in pairs)
    bare = statistics.median(forward for _, forward in pairs)
    overhead = statistics.median(step - forward for step, forward in pairs)
    print(
        f"engine step at 16 rows {engine * 1000:.1f} ms, bare forward on the same cache"
        f" {bare * 1000:.1f} ms: our overhead {overhead * 1000:.1f} ms per step,"
        f" {overhead / engine:.0%} of the step (median of the paired differences)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
