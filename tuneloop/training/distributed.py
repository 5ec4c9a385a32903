"""Data-parallel training over several processes (one per GPU), launched by ``torchrun``.

SageMaker starts one ``train.py`` per instance and sets ``SM_NUM_GPUS``. With more than one
GPU the entry point relaunches itself under ``torchrun`` (one process per GPU);
``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in each child.

Every process builds the same step plan and the same micro-batches (both are pure functions
of seed and step) and computes only its share, ``batches[rank::world_size]``. The gradients
of the trainable parameters are then summed over the processes with one ``all_reduce`` per
step. This is what DDP does, done explicitly: DDP's wrapper needs the same number of forward
passes on every process, which packed steps (a varying number of rows) do not give. Because
each process divides its loss by the *step's* label count (known to all), the summed
gradient equals the single-process one, and the loss sequence matches a one-process run of
the same effective batch. Only rank 0 logs and writes outputs and checkpoints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

# Gradients are all-reduced in flattened buckets of about this many elements (100 MB fp32):
# one call for a LoRA adapter, bounded extra memory for full fine-tuning.
_BUCKET_ELEMENTS = 25_000_000


@dataclass(frozen=True)
class Topology:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def processes_wanted(environ: Mapping[str, str]) -> int:
    """How many training processes this instance should run (SageMaker's ``SM_NUM_GPUS``)."""
    try:
        return max(1, int(environ.get("SM_NUM_GPUS") or 1))
    except ValueError:
        return 1


def should_relaunch(environ: Mapping[str, str]) -> bool:
    """True in the process SageMaker started on a multi-GPU instance (not yet under torchrun)."""
    return processes_wanted(environ) > 1 and "LOCAL_RANK" not in environ


def relaunch(script: Path, argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run ``script argv`` under torchrun, one process per GPU; its exit code."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes_wanted(environ)}",
        str(script),
        *argv,
    ]
    print(f"train: {processes_wanted(environ)} GPUs, relaunching under torchrun", flush=True)
    process = subprocess.Popen(command, env=dict(environ))
    # A spot reclaim sends SIGTERM to this process: pass it on (torchrun hands it to every
    # rank, which checkpoint after the current step) and wait for them instead of dying.
    forward = _forward_sigterm(process)
    try:
        return process.wait()
    finally:
        forward()


def _forward_sigterm(process: subprocess.Popen[bytes]) -> Callable[[], None]:
    """Forward SIGTERM to ``process`` until the returned function restores the handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def topology(environ: Mapping[str, str] | None = None) -> Topology:
    """This process's place, from the variables torchrun sets (a single process without)."""
    env = os.environ if environ is None else environ
    world_size = int(env.get("WORLD_SIZE") or 1)
    if world_size <= 1:
        return Topology()
    return Topology(world_size, int(env.get("RANK") or 0), int(env.get("LOCAL_RANK") or 0))


def start(place: Topology) -> None:
    """Join the process group (NCCL on GPUs, gloo on CPU) once per process."""
    if place.distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)


def stop(place: Topology) -> None:
    if place.distributed and dist.is_initialized():
        dist.destroy_process_group()


def sum_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Sum the trainable gradients over all processes, in flattened buckets.

    A process with no micro-batch in a step contributes zeros.
    """
    bucket: list[torch.nn.Parameter] = []
    size = 0
    for parameter in parameters:
        bucket.append(parameter)
        size += parameter.numel()
        if size >= _BUCKET_ELEMENTS:
            _all_reduce_bucket(bucket)
            bucket, size = [], 0
    if bucket:
        _all_reduce_bucket(bucket)


def _all_reduce_bucket(parameters: Sequence[torch.nn.Parameter]) -> None:
    grads = [
        p.grad if p.grad is not None else torch.zeros_like(p, memory_format=torch.contiguous_format)
        for p in parameters
    ]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for parameter, grad in zip(parameters, grads, strict=True):
        count = grad.numel()
        parameter.grad = flat[offset : offset + count].view_as(parameter).clone()
        offset += count


def sum_scalars(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sum of small per-process values (step loss, stop flag)."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(value) for value in tensor.tolist()]
