"""Per-step data cost of the training loop: the ``datasets`` path against the list loader.

What the loop does per optimizer step before the model runs: take the step's indices from
the step plan, fetch those examples and turn them into micro-batch tensors (packing, position
ids, labels). With a tiny model a step is ~80 ms, so a millisecond here is visible in the
loop's tokens/s. This isolates that work, in one process, on the same generated records as
``train_data_loading.py`` (half text, half chat), tokenized once with the tiny byte-level
tokenizer into the ``datasets`` token cache:

- ``list``: the loader of ``BASELINE_COMMIT`` (``batching.py`` as of that commit, loaded
  from git): every example a pair of Python lists held in memory, ``[examples[i] for i in
  step]``;
- ``datasets @ BASELINE collate``: today's fetch (one ``dataset[indices]`` take per step
  from the memory-mapped token table) with that commit's collation;
- ``datasets cold``: today's fetch and collation on the table ``encode_dataset`` just wrote;
- ``datasets warm``: the same on the table re-read from the cache (a spot restart).

Every variant builds the same step plan (seed, ``group_by_length``, packing on, 8 examples a
step, ``max_seq_length`` 256 as in the loop benchmark) and must produce the same tensors for
every step; they run interleaved, ``--repeats`` times, and the median ms/step and its ratio
to ``list`` are printed::

    .venv/bin/python benchmarks/train_data_steps.py                       # 100k records
    .venv/bin/python benchmarks/train_data_steps.py --records 10000 --steps 100
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests/unit"))

from tiny_models import make_tiny_tokenizer  # noqa: E402 (after the sys.path lines)
from train_data_loading import BASELINE_COMMIT, generate  # noqa: E402

from tuneloop.training.batching import MicroBatch, micro_batches, step_plan  # noqa: E402
from tuneloop.training.data import (  # noqa: E402
    IGNORE_INDEX,
    Encoded,
    Example,
    encode_dataset,
    read_channel,
)

Steps = Callable[[], Iterator[list[MicroBatch]]]


def baseline_batching() -> ModuleType:
    """``tuneloop/training/batching.py`` of ``BASELINE_COMMIT`` as a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:tuneloop/training/batching.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("baseline_batching", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, "baseline_batching.py", "exec"), module.__dict__)
    return module


def as_lists(encoded: Encoded) -> list[Example]:
    """The examples as the list loader held them (a list of ids and labels each)."""
    rows = encoded.table.to_dict()
    return [
        Example(ids, [t if keep else IGNORE_INDEX for t, keep in zip(ids, mask, strict=True)])
        for ids, mask in zip(rows["input_ids"], rows["predicted"], strict=True)
    ]


def variant(
    plan: Callable[[], Iterator[list[int]]],
    fetch: Callable[[list[int]], list[Example]],
    collate: Callable[..., list[MicroBatch]],
    steps: int,
    max_length: int,
) -> Steps:
    def run() -> Iterator[list[MicroBatch]]:
        indices = plan()
        for _ in range(steps):
            yield collate(
                fetch(next(indices)),
                per_device_batch_size=8,
                accumulation_steps=1,
                pad_id=0,
                packing=True,
                max_length=max_length,
            )

    return run


def same_batches(first: list[MicroBatch], second: list[MicroBatch]) -> bool:
    return len(first) == len(second) and all(
        a.tokens == b.tokens
        and a.label_count == b.label_count
        and a.tensors.keys() == b.tensors.keys()
        and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
        for a, b in zip(first, second, strict=True)
    )


def main(args: Any) -> None:
    torch.set_num_threads(1)  # as the loop does for a tiny model
    baseline = baseline_batching()
    with tempfile.TemporaryDirectory(prefix="train-data-steps-") as name:
        scratch = Path(name)
        channel = scratch / "channel"
        channel.mkdir()
        generate(channel / "train.jsonl", args.records)
        tokenizer = make_tiny_tokenizer()
        began = time.perf_counter()
        dataset = read_channel(channel, cache_dir=scratch / "cache")
        cold = encode_dataset(dataset, tokenizer, args.max_seq_length)
        warm = encode_dataset(read_channel(channel, cache_dir=scratch / "cache"), tokenizer,
                              args.max_seq_length)  # fmt: skip
        assert warm.from_cache and not cold.from_cache
        lists = as_lists(cold)
        list_lengths = [len(e.input_ids) for e in lists]
        lengths = cold.lengths()
        print(
            f"{args.records:,} records -> {len(cold):,} examples, {int(lengths.sum()):,} tokens "
            f"(prepared in {time.perf_counter() - began:.0f}s); {args.steps} steps of 8 examples, "
            f"packing, group_by_length, max_seq_length {args.max_seq_length}, "
            f"{args.repeats} interleaved repeats",
            flush=True,
        )

        def our_plan() -> Iterator[list[int]]:
            return step_plan(lengths, 8, args.seed, group_by_length=True)

        def list_plan() -> Iterator[list[int]]:
            return baseline.step_plan(list_lengths, 8, args.seed, group_by_length=True)

        shape = (args.steps, args.max_seq_length)
        variants: dict[str, Steps] = {
            "list": variant(
                list_plan, lambda step: [lists[i] for i in step], baseline.micro_batches,
                *shape,
            ),
            f"datasets @ {BASELINE_COMMIT[:7]} collate": variant(
                our_plan, cold.examples, baseline.micro_batches, *shape
            ),
            "datasets cold": variant(our_plan, cold.examples, micro_batches, *shape),
            "datasets warm": variant(our_plan, warm.examples, micro_batches, *shape),
        }  # fmt: skip
        reference = list(variants["list"]())
        for label, run in variants.items():
            if not all(map(same_batches, reference, run())):
                raise SystemExit(f"{label}: the batches differ from the list loader's")
        tokens = sum(batch.tokens for step in reference for batch in step)
        print(f"  same tensors for every step in every variant ({tokens / args.steps:,.0f} "
              "tokens a step)")  # fmt: skip
        seconds: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.repeats):
            for label, run in variants.items():
                started = time.perf_counter()
                for _ in run():
                    pass
                seconds[label].append(time.perf_counter() - started)
        base = statistics.median(seconds["list"])
        for label, times in seconds.items():
            median = statistics.median(times)
            spread = ", ".join(f"{t / args.steps * 1e3:.2f}" for t in times)
            print(
                f"  {label:<26} {median / args.steps * 1e3:6.2f} ms/step"
                f"  ({median / base:.2f}x list)  [{spread}]"
            )


def parse(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max_seq_length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse())
