"""Sharded training (``sharding fsdp``) with PyTorch's FSDP2 (``fully_shard``).

Each decoder layer is one FSDP unit and a small root module holds the rest (embeddings,
final norm, output head), so every process keeps only its shard of the weights, gradients
and optimizer state; a unit's full weights exist only while it runs (all-gather before,
reduce-scatter of the gradients after).

Three things keep the result equal to the single-process one:

- Gradients are *summed* over the processes (FSDP averages by default): each process
  already divides its loss by the step's label count, as in data-parallel training.
- Every process runs the same number of forward/backward passes per step (FSDP's
  collectives run inside them): a process with fewer micro-batches runs zero-weighted
  passes over a micro-batch of the step, which add nothing to the gradient.
- Checkpoints are written with ``torch.distributed.checkpoint`` (DCP): one shard file per
  process and a metadata file, which DCP can read back into another number of processes
  (or into one unsharded process). A small ``trainer_state.pt`` beside them (written last,
  atomically) commits the checkpoint: fingerprint, scheduler, each process's RNG states, data
  position and progress.

At the end the full weights are gathered to rank 0 (on CPU) into an unsharded copy of the
model, so the saved adapter or model is exactly what an unsharded run writes.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard

from tuneloop.training.batching import MicroBatch
from tuneloop.training.checkpoint import TrainState, restore_rng_states, rng_states
from tuneloop.training.distributed import Topology

CHECKPOINT_DIR = "tuneloop_sharded_checkpoint"
STATE_FILE = "trainer_state.pt"
LossSum = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class _LossRoot(torch.nn.Module):
    """The FSDP root: owns the model so its forward hooks gather the root unit's weights.

    The loop computes the loss through the decoder and the head separately (``_split_head``),
    which would bypass the hooks of the model's own forward.
    """

    def __init__(self, model: torch.nn.Module, loss_sum: LossSum) -> None:
        super().__init__()
        self.model = model
        self._loss_sum = loss_sum

    def forward(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._loss_sum(tensors)


def shard(
    model: Any,
    loss_sum: LossSum,
    device: torch.device,
    place: Topology,
    *,
    from_rank0: bool = False,
) -> LossSum:
    """Shard ``model`` in place over all processes; the sharded loss function to call.

    With ``from_rank0`` only rank 0 holds weights (the others built ``model`` on the meta
    device): they are broadcast into every process's shards, and the buffers with them."""
    mesh = init_device_mesh(device.type, (place.world_size,))
    root = _LossRoot(model, loss_sum)
    # Rank 0's full weights, kept for the broadcast (fully_shard copies out its shards).
    full = root.state_dict() if from_rank0 and place.is_main else {}
    for module in _layers(model):
        fully_shard(module, mesh=mesh)
    fully_shard(root, mesh=mesh)
    if from_rank0:
        _broadcast_from_rank0(root, full, device, place)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            # Sum, not average: the loss is already divided by the step's label count. Plain
            # SUM also runs on gloo, which has no AVG or pre-multiplied sum.
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return root


def _broadcast_from_rank0(
    root: torch.nn.Module, full: dict[str, Any], device: torch.device, place: Topology
) -> None:
    """Fill every process's shards from rank 0's full weights (FSDP2's meta-device start),
    and its buffers (rotary frequencies are not in the state dict) and RNG states, so every
    process continues as if it had loaded the model itself."""
    if not place.is_main:
        root.to_empty(device=device)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(root, full, options=options)
    for buffer in root.buffers():
        dist.broadcast(buffer, src=0)
    # Rank 0's initialisation drew random numbers (the adapter's) that meta tensors did not.
    states: list[dict[str, Any]] = [rng_states() if place.is_main else {}]
    dist.broadcast_object_list(states, src=0)
    restore_rng_states(states[0])


def _layers(model: Any) -> list[torch.nn.Module]:
    """The model's repeated blocks (transformers' ``_no_split_modules``), one unit each."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    return [module for module in model.modules() if type(module).__name__ in names]


def rank_passes(
    batches: Sequence[MicroBatch], place: Topology, *, same_count: bool
) -> list[tuple[MicroBatch, bool]]:
    """This process's micro-batches of a step as ``(batch, counts)``.

    With ``same_count`` every process gets as many passes as the busiest one: the missing
    ones reuse the step's first micro-batch and must be run with zero weight.
    """
    mine = [(batch, True) for batch in batches[place.rank :: place.world_size]]
    if same_count:
        passes = -(-len(batches) // place.world_size)
        mine += [(batches[0], False)] * (passes - len(mine))
    return mine


def meta_replica(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose parameters are on the meta device (no memory), taken before
    sharding; ``full_model`` fills it. Buffers (e.g. rotary frequencies) are copied."""
    memo: dict[int, Any] = {
        id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)


def full_model(model: Any, replica: torch.nn.Module | None) -> Any:
    """Gather the full weights (collective); rank 0 gets ``replica`` filled with them on
    CPU, the other ranks keep the sharded model."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    if replica is None:
        return model
    filled = {
        id(p): torch.nn.Parameter(_tensor(weights[name]), p.requires_grad)
        for name, p in replica.named_parameters()
    }
    # Replaced by identity, module by module, so tied weights stay one tensor.
    for module in replica.modules():
        for key, parameter in module._parameters.items():
            if parameter is not None and id(parameter) in filled:
                module._parameters[key] = filled[id(parameter)]
    return replica


def _tensor(value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected a tensor in the gathered state dict, got {type(value)}")
    return value


def _state_dict(model: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """What DCP saves and loads: the trained parameters (sharded) and the optimizer state."""
    trained = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    return {"model": trained, "optimizer": get_optimizer_state_dict(model, optimizer)}


def save_checkpoint(
    folder: Path,
    run_id: str,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainState,
    place: Topology,
) -> None:
    """Write a sharded checkpoint (every process calls this)."""
    shards = f"step-{state.step:06d}"
    dcp.save(_state_dict(model, optimizer), checkpoint_id=folder / shards)
    rng: list[Any] = [rng_states()]
    if place.distributed:  # each process's own: dropout masks differ per process
        rng = [None] * place.world_size
        dist.all_gather_object(rng, rng_states())
    if place.is_main:
        saved = {
            "fingerprint": run_id,
            "shards": shards,
            "processes": place.world_size,
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "state": dataclasses.asdict(state),
        }
        tmp = folder / (STATE_FILE + ".tmp")
        torch.save(saved, tmp)
        tmp.replace(folder / STATE_FILE)  # the commit: until here the last one stands
        for old in folder.glob("step-*"):
            if old.name != shards:
                shutil.rmtree(old, ignore_errors=True)
    if place.distributed:
        dist.barrier()


def load_checkpoint(
    folder: Path,
    run_id: str,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    place: Topology,
) -> TrainState | None:
    """Restore a matching sharded checkpoint, resharded to this run's processes; None if none."""
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("fingerprint") != run_id:
        return None
    state_dict = _state_dict(model, optimizer)
    dcp.load(state_dict, checkpoint_id=folder / saved["shards"])
    set_optimizer_state_dict(model, optimizer, state_dict["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng = saved["rng"]
    # Another process count draws other dropout masks anyway; rank 0's states then serve.
    restore_rng_states(rng[place.rank] if len(rng) == place.world_size else rng[0])
    state = TrainState(**saved["state"])
    state.resumed_step, state.resumed_tokens = state.step, state.tokens
    return state
