"""Continuous batching: sequences join the running batch at the next decode step and leave
it as soon as they end.

``ContinuousBatch`` holds the active sequences and one KV cache for all of them. ``admit``
prefills newcomers (left-padded among themselves, one forward) and merges their KV into the
batch cache; ``step`` runs one decode step for every active sequence and retires the ones
that ended (EOS, ``max_new_tokens`` or a stop string), calling their ``on_done``.

Layout: every row of the batch writes its next token in the same cache column; a row's
earlier columns hold its prompt and tokens, right-aligned, and the columns before them are
masked (``attention_mask`` 0). Position ids count each row's real tokens only, so a row's
logits do not depend on when it joined or on its batch-mates (greedy tokens equal the
unbatched decode, tested). The cache keeps per-layer buffers with spare columns and writes
each step's keys and values in place (``_SlotLayer``): ``DynamicCache`` concatenates the
whole cache every step, about a fifth of a 16-row step of a 135M model on CPU. Joining
copies the cache once (the newcomers' rows are added and, when a newcomer's prompt is
longer than the batch's columns, every row is shifted right); leaving selects the kept rows
and drops leading columns no row uses.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tuneloop.serving.decode import (
    DecodeResult,
    DecodeRow,
    FinishReason,
    _Active,
    _choose,
    _finish_reason,
    _row_rng,
    adapter_arguments,
)

_SPARE_COLUMNS = 64


class _SlotLayer(DynamicLayer):
    """One layer's keys and values in a buffer with spare columns, written in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()
        self.key_buffer, self.value_buffer, self.length = keys, values, length
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self._expose()

    def _expose(self) -> None:
        self.keys = self.key_buffer[:, :, : self.length]
        self.values = self.value_buffer[:, :, : self.length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key_states.shape[-2]
        if end > self.key_buffer.shape[-2]:
            self.key_buffer = _widen(self.key_buffer, self.length, end + _SPARE_COLUMNS)
            self.value_buffer = _widen(self.value_buffer, self.length, end + _SPARE_COLUMNS)
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self._expose()
        assert self.keys is not None and self.values is not None
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length


def _widen(buffer: torch.Tensor, used: int, columns: int) -> torch.Tensor:
    wider = buffer.new_zeros((*buffer.shape[:2], columns, buffer.shape[3]))
    wider[:, :, :used] = buffer[:, :, :used]
    return wider


@dataclass
class Running(_Active):
    """A sequence being generated: its row, its tokens so far and its callbacks."""

    on_done: Callable[[DecodeResult], None] = lambda result: None
    on_token: Callable[[int, FinishReason | None], None] | None = None
    """Called after every chosen token (EOS included) with the finish reason, if it ends."""
    on_error: Callable[[Exception], None] = lambda exc: None
    next_token: int = field(default=0)


class ContinuousBatch:
    """The running batch; not thread-safe (one worker thread drives it)."""

    def __init__(
        self,
        model: Any,
        *,
        pad_token_id: int,
        eos_token_ids: Collection[int],
        detokenize: Callable[[list[int]], str],
        max_batch_size: int,
    ) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.eos = frozenset(eos_token_ids)
        self.detokenize = detokenize
        self.max_batch_size = max_batch_size
        self.mixed_adapters = False
        """The model holds several LoRA adapters: each row names its own (set by the
        batcher before each step, as adapters come and go)."""
        self.active: list[Running] = []
        self._cache: DynamicCache | None = None
        self._mask = torch.zeros((0, 0), dtype=torch.long)

    @property
    def free_slots(self) -> int:
        return self.max_batch_size - len(self.active)

    def sequence(
        self,
        row: DecodeRow,
        on_done: Callable[[DecodeResult], None],
        on_token: Callable[[int, FinishReason | None], None] | None = None,
        on_error: Callable[[Exception], None] = lambda exc: None,
    ) -> Running:
        """A new sequence for ``admit``: ``on_done`` gets its result, ``on_token`` each token,
        ``on_error`` the exception of a failed step."""
        return Running(
            index=0,
            row=row,
            rng=_row_rng(row),
            tokens=[],
            on_done=on_done,
            on_token=on_token,
            on_error=on_error,
        )

    def admit(self, newcomers: Sequence[Running]) -> None:
        """Prefill ``newcomers`` together and add the unfinished ones to the batch (call
        under ``torch.inference_mode()``; at most ``free_slots`` of them)."""
        if not newcomers:
            return
        if len(newcomers) > self.free_slots:
            raise ValueError(f"{len(newcomers)} newcomers for {self.free_slots} free slots")
        device = self.model.device
        width = max(len(s.row.prompt_ids) for s in newcomers)
        pads = [width - len(s.row.prompt_ids) for s in newcomers]
        input_ids = torch.tensor(
            [
                [self.pad_token_id] * p + list(s.row.prompt_ids)
                for s, p in zip(newcomers, pads, strict=True)
            ],
            device=device,
        )
        mask = torch.tensor(
            [[0] * p + [1] * (width - p) for p in pads], dtype=torch.long, device=device
        )
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        cache = DynamicCache(config=self.model.config)
        logits = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **adapter_arguments([s.row for s in newcomers], self.mixed_adapters),
        ).logits[:, -1, :]
        keep = self._settle(list(newcomers), logits)
        if keep:
            self._merge([newcomers[i] for i in keep], cache, mask[keep], keep)

    def step(self) -> None:
        """One decode step for every active sequence (under ``torch.inference_mode()``)."""
        if not self.active:
            return
        assert self._cache is not None
        device = self.model.device
        positions = self._mask.sum(dim=-1, keepdim=True)
        self._mask = torch.cat([self._mask, self._mask.new_ones((len(self.active), 1))], dim=-1)
        logits = self.model(
            input_ids=torch.tensor([[s.next_token] for s in self.active], device=device),
            attention_mask=self._mask,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
            **adapter_arguments([s.row for s in self.active], self.mixed_adapters),
        ).logits[:, -1, :]
        keep = self._settle(self.active, logits)
        if len(keep) < len(self.active):
            self._retain(keep)

    def fail_all(self) -> list[Running]:
        """Drop every active sequence (after a model failure); return them."""
        dropped, self.active = self.active, []
        self._cache, self._mask = None, torch.zeros((0, 0), dtype=torch.long)
        return dropped

    def _settle(self, sequences: list[Running], logits: torch.Tensor) -> list[int]:
        """Choose each sequence's next token; finish the ended ones; the others' slots."""
        chosen = _choose(logits, sequences)
        keep: list[int] = []
        for slot, (state, token) in enumerate(zip(sequences, chosen, strict=True)):
            reason = _finish_reason(state, token, self.eos, self.detokenize)
            if state.on_token is not None:
                state.on_token(token, reason)
            if reason is None:
                state.next_token = token
                keep.append(slot)
            else:
                state.on_done(DecodeResult(state.tokens, reason))
        return keep

    def _merge(
        self,
        newcomers: list[Running],
        cache: DynamicCache,
        mask: torch.Tensor,
        rows: list[int],
    ) -> None:
        width = mask.shape[1]
        old = len(self.active)
        used = self._mask.shape[1] if old else 0
        columns = max(used, width)
        total = old + len(newcomers)
        merged_mask = mask.new_zeros((total, columns))
        if old:
            merged_mask[:old, columns - used :] = self._mask
        merged_mask[old:, columns - width :] = mask
        index = torch.tensor(rows, device=mask.device)
        layers: list[_SlotLayer] = []
        for number, layer in enumerate(cache.layers):
            if type(layer) is not DynamicLayer or layer.keys is None or layer.values is None:
                raise TypeError(  # sliding-window or linear-attention caches: not supported
                    f"continuous batching needs full-attention cache layers, not {layer!r}"
                )
            buffers = []
            for fresh, name in ((layer.keys, "key_buffer"), (layer.values, "value_buffer")):
                heads, dim = fresh.shape[1], fresh.shape[3]
                buffer = fresh.new_zeros((total, heads, columns + _SPARE_COLUMNS, dim))
                if old:
                    assert self._cache is not None
                    previous = getattr(self._cache.layers[number], name)
                    buffer[:old, :, columns - used : columns] = previous[:, :, :used]
                buffer[old:, :, columns - width : columns] = fresh.index_select(0, index)
                buffers.append(buffer)
            layers.append(_SlotLayer(buffers[0], buffers[1], columns))
        if self._cache is None:
            self._cache = DynamicCache(config=self.model.config)
        self._cache.layers = layers  # type: ignore[assignment]
        self._mask = merged_mask
        self.active = self.active + newcomers

    def _retain(self, keep: list[int]) -> None:
        self.active = [self.active[slot] for slot in keep]
        if not keep:
            self._cache, self._mask = None, torch.zeros((0, 0), dtype=torch.long)
            return
        assert self._cache is not None
        index = torch.tensor(keep, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        start = int((mask.sum(dim=0) > 0).nonzero()[0].item())  # columns no row uses
        self._mask = mask[:, start:]
        for layer in self._cache.layers:
            assert isinstance(layer, _SlotLayer)
            end = layer.length
            for name in ("key_buffer", "value_buffer"):
                kept = getattr(layer, name).index_select(0, index)
                setattr(layer, name, kept[:, :, start:])
            layer.length = end - start
            layer._expose()
