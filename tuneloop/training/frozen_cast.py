"""Frozen linear weights stored in the autocast dtype for the duration of training.

Under autocast every ``F.linear`` casts its fp32 weight to bf16 again on every call:
autocast caches casts only for leaf tensors that require grad, and the frozen base weights
do not. Holding the frozen weights in bf16 while training removes that copy of ~100M
parameters per micro-batch, with the same numbers (autocast rounds the weight the same
way). Only frozen ``nn.Linear`` weights change: embeddings, norms, the (often tied) output
head and every trained parameter keep their dtype, so the residual stream stays fp32. The
fp32 weights are put back afterwards, so the model leaves training as it came in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def frozen_linear_weights_in(model: Any, dtype: torch.dtype | None) -> Iterator[int]:
    """Within the block, frozen ``nn.Linear`` weights of ``model`` are ``dtype``; yields how
    many were cast (0 when ``dtype`` is None)."""
    if dtype is None:
        yield 0
        return
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    originals: list[tuple[torch.nn.Linear, torch.nn.Parameter]] = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (
            type(module) is torch.nn.Linear
            and module is not output
            and isinstance(weight, torch.nn.Parameter)
            and not weight.requires_grad
            and weight.dtype == torch.float32
        ):
            originals.append((module, weight))
            module.weight = torch.nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    try:
        yield len(originals)
    finally:
        for module, weight in originals:
            module.weight = weight
