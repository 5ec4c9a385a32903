"""Which examples each optimizer step sees, and how they become tensors.

The plan is a pure function of ``(seed, step)``: a resumed run regenerates it and skips the
steps already done, so the data position in a checkpoint is just the step count.

- Each step takes ``per_device_batch_size * gradient_accumulation_steps`` examples from a
  seeded stream of epochs. The step's *set* of examples therefore does not depend on how it
  is split into micro-batches, which is what makes accumulation and packing equivalent to
  one big batch.
- ``group_by_length`` sorts windows of ``GROUP_WINDOW_STEPS`` steps by length and then
  shuffles the steps of the window, so a step holds examples of similar length (less padding).
- ``packing`` puts a step's examples end to end in evenly filled rows of at most
  ``max_seq_length`` tokens. Position
  ids restart at 0 for each example and no attention mask is passed, which transformers turns
  into a block-diagonal causal mask (each example attends only to itself). The first token of
  each packed example is never a target: it would be predicted from the previous example.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from tuneloop.training.data import IGNORE_INDEX, Example, index_stream

GROUP_WINDOW_STEPS = 16


@dataclass(frozen=True)
class MicroBatch:
    tensors: dict[str, torch.Tensor]  # input_ids, labels and attention_mask or position_ids
    tokens: int  # non-padding tokens
    label_count: int  # predicted positions (next-token targets)

    @property
    def positions(self) -> int:
        """Token positions computed, padding included."""
        return int(self.tensors["input_ids"].numel())


def step_plan(
    lengths: Sequence[int] | npt.NDArray[np.int64],
    examples_per_step: int,
    seed: int,
    *,
    group_by_length: bool,
) -> Iterator[list[int]]:
    """Example indices of each optimizer step, forever (deterministic in ``seed``)."""
    stream = index_stream(len(lengths), seed)
    window_index = 0
    while True:
        window_size = examples_per_step * (GROUP_WINDOW_STEPS if group_by_length else 1)
        window = [next(stream) for _ in range(window_size)]
        steps = [
            window[start : start + examples_per_step]
            for start in range(0, window_size, examples_per_step)
        ]
        if group_by_length:
            ordered = sorted(window, key=lambda index: lengths[index], reverse=True)
            steps = [
                ordered[start : start + examples_per_step]
                for start in range(0, window_size, examples_per_step)
            ]
            # Long and short steps alternate at random, not longest-first.
            generator = torch.Generator().manual_seed(seed * 7_919 + window_index)
            steps = [steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()]
        window_index += 1
        yield from steps


def micro_batches(
    examples: Sequence[Example],
    *,
    per_device_batch_size: int,
    accumulation_steps: int,
    pad_id: int,
    packing: bool,
    max_length: int,
) -> list[MicroBatch]:
    """One step's examples as micro-batches (padded rows, or packed rows)."""
    if packing:
        rows = pack(examples, max_length)
        return [
            collate_packed(rows[start : start + per_device_batch_size], pad_id)
            for start in range(0, len(rows), per_device_batch_size)
        ]
    # Sorted so each micro-batch pads only to its own longest example.
    ordered = sorted(examples, key=lambda e: len(e.input_ids), reverse=True)
    chunks = [
        ordered[start : start + per_device_batch_size]
        for start in range(0, len(ordered), per_device_batch_size)
    ]
    return [collate(chunk, pad_id) for chunk in chunks[:accumulation_steps] if chunk]


def pack(examples: Sequence[Example], capacity: int) -> list[list[Example]]:
    """The fewest rows of at most ``capacity`` tokens, filled evenly.

    Rows are padded to the longest one, so even rows waste least: with the row count fixed,
    each example (longest first) goes to the emptiest row; if a row then overflows, one
    more row is tried.
    """
    sizes = [len(e.input_ids) for e in examples]
    ordered = sorted(range(len(examples)), key=lambda i: sizes[i], reverse=True)
    count = max(1, math.ceil(sum(sizes) / capacity))
    while True:
        rows: list[list[Example]] = [[] for _ in range(count)]
        fill = [0] * count
        for index in ordered:
            row = min(range(count), key=fill.__getitem__)
            rows[row].append(examples[index])
            fill[row] += sizes[index]
        if max(fill) <= capacity or count >= len(examples):
            return [row for row in rows if row]
        count += 1


def collate(examples: Sequence[Example], pad_id: int) -> MicroBatch:
    """Right-pad to the longest example; padding is masked out and never labelled."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        size = len(example.input_ids)
        input_ids[row, :size] = _long(example.input_ids)
        labels[row, :size] = _long(example.labels)
        attention[row, :size] = 1
    return MicroBatch(
        {"input_ids": input_ids, "labels": labels, "attention_mask": attention},
        tokens=int(attention.sum()),
        label_count=int((labels[:, 1:] != IGNORE_INDEX).sum()),
    )


def collate_packed(rows: Sequence[Sequence[Example]], pad_id: int) -> MicroBatch:
    """Rows of packed examples, right-padded; padding is its own (unlabelled) sequence."""
    width = max(sum(len(e.input_ids) for e in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    tokens = 0
    for index, row in enumerate(rows):
        cursor = 0
        for example in row:
            size = len(example.input_ids)
            end = cursor + size
            input_ids[index, cursor:end] = _long(example.input_ids)
            labels[index, cursor:end] = _long(example.labels)
            # Position 0 of an example is never a target (as when unpacked).
            labels[index, cursor] = IGNORE_INDEX
            positions[index, cursor:end] = torch.arange(size)
            cursor = end
        tokens += cursor
        positions[index, cursor:] = torch.arange(width - cursor)
    return MicroBatch(
        {"input_ids": input_ids, "labels": labels, "position_ids": positions},
        tokens=tokens,
        label_count=int((labels[:, 1:] != IGNORE_INDEX).sum()),
    )


def _long(values: Sequence[int]) -> torch.Tensor:
    """``values`` as an int64 tensor: through numpy, ~6x faster than ``torch.tensor`` on a
    list of ints (which converts element by element), most of a tiny model's collation."""
    return torch.from_numpy(np.asarray(values, dtype=np.int64))
