"""Spot-resume checkpoints: everything a run needs to continue exactly where it stopped.

One file in the checkpoint dir holds the trained weights (the adapter, or every weight with
full fine-tuning), the optimizer and scheduler states, the RNG states of python, numpy and
torch, the data position (steps done; the data plan is a pure function of seed and step)
and the progress so far (losses, token counts).
A run resumed from it produces the same losses, step for step, as one never interrupted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneloop.training.config import TrainConfig

CHECKPOINT_FILE = "tuneloop_checkpoint.pt"
# Settings that change how a run is executed or observed, not what it computes.
_NOT_IN_FINGERPRINT = (
    "checkpoint_dir",
    "checkpoint_steps",
    "num_threads",
    "model_version",
    "stop_after_steps",
    "gradient_checkpointing",
    "sharding",
)


@dataclass
class TrainState:
    step: int = 0
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    label_tokens: int = 0
    examples_seen: int = 0  # the data position, kept to check it against the step count
    positions: int = 0  # token positions computed, padding included
    resumed_step: int = 0
    resumed_tokens: int = 0


def fingerprint(config: TrainConfig, data_sha256: str, examples_per_step: int = 0) -> str:
    """Identifies a run: a checkpoint from another config or data set is not resumed.

    With ``examples_per_step`` (sharded runs) the step's size stands for how it is split
    (batch size x accumulation x processes): the step's examples depend only on it, so such a
    checkpoint resumes on another process count with the accumulation adjusted.
    """
    settings = dataclasses.asdict(config)
    for name in _NOT_IN_FINGERPRINT:
        settings.pop(name)
    if examples_per_step:
        del settings["per_device_batch_size"], settings["gradient_accumulation_steps"]
        settings["examples_per_step"] = examples_per_step
    payload = json.dumps({"config": settings, "data": data_sha256}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def trainable_weights(model: Any) -> dict[str, torch.Tensor]:
    """The parameters the run trains (the LoRA adapter, or every weight), by name, on CPU."""
    return {
        name: parameter.detach().cpu()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }


def restore_trainable_weights(model: Any, weights: dict[str, torch.Tensor]) -> None:
    parameters = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if parameters.keys() != weights.keys():
        raise ValueError("checkpoint weights do not match the model's trainable parameters")
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(weights[name])


def save_checkpoint(
    path: Path, run_id: str, model: Any, optimizer: Any, scheduler: Any, state: TrainState
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "fingerprint": run_id,
            "trainable": trainable_weights(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_states(),
            "state": dataclasses.asdict(state),
        },
        tmp,
    )
    tmp.replace(path)  # atomic: an interruption never leaves half a checkpoint


def load_checkpoint(
    path: Path, run_id: str, model: Any, optimizer: Any, scheduler: Any
) -> TrainState | None:
    """Restore a matching checkpoint into the objects and return its state; None if none."""
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("fingerprint") != run_id:
        return None
    restore_trainable_weights(model, saved["trainable"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    restore_rng_states(saved["rng"])
    state = TrainState(**saved["state"])
    state.resumed_step, state.resumed_tokens = state.step, state.tokens
    return state
