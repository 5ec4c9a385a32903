"""Data-parallel training over several processes (one per GPU), launched by ``torchrun``.

SageMaker starts one ``train.py`` per instance and sets ``SM_NUM_GPUS``, ``SM_HOSTS`` and
``SM_CURRENT_HOST``. With more than one GPU, or more than one instance, the entry point
relaunches itself under ``torchrun`` (one process per GPU); on several instances every
``torchrun`` joins one process group by static rendezvous at the first host (node rank =
the host's place in ``SM_HOSTS``). ``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
in each child; ``RANK`` is global, ``LOCAL_RANK`` the GPU on this instance.

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

from tuneloop.training.hosts import Cluster

# Gradients are all-reduced in flattened buckets of about this many elements (100 MB fp32):
# one call for a LoRA adapter, bounded extra memory for full fine-tuning.
_BUCKET_ELEMENTS = 25_000_000
# Node 0's torchrun listens here for the static rendezvous (torch's default port).
MASTER_PORT = 29500
# Where node 0 is reached: its host name from SM_HOSTS, unless these are set. Only for runs
# whose host names do not resolve (several "hosts" on one machine, in tests: 127.0.0.1).
MASTER_ADDR_ENV = "TUNELOOP_MASTER_ADDR"
MASTER_PORT_ENV = "TUNELOOP_MASTER_PORT"


class LaunchError(ValueError):
    """A launch setting (the master address override) that cannot work."""


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


def should_relaunch(environ: Mapping[str, str], hosts: Cluster | None = None) -> bool:
    """True in the process SageMaker started (not yet under torchrun) when this instance runs
    several processes or the job spans several instances."""
    several = processes_wanted(environ) > 1 or (hosts is not None and hosts.multi_node)
    return several and "LOCAL_RANK" not in environ


def torchrun_command(
    script: Path, argv: Sequence[str], environ: Mapping[str, str], hosts: Cluster
) -> list[str]:
    """The ``torchrun`` command that runs ``script argv`` on this instance's GPUs, as node
    ``hosts.node_rank`` of ``hosts.nodes``."""
    command = [sys.executable, "-m", "torch.distributed.run"]
    if hosts.multi_node:
        address, port = master_endpoint(environ, hosts)
        command += [
            f"--nnodes={hosts.nodes}",
            f"--node_rank={hosts.node_rank}",
            "--rdzv_backend=static",
            f"--master_addr={address}",
            f"--master_port={port}",
        ]
    else:
        command.append("--standalone")
    return [*command, f"--nproc_per_node={processes_wanted(environ)}", str(script), *argv]


def master_endpoint(environ: Mapping[str, str], hosts: Cluster) -> tuple[str, int]:
    """Node 0's address and rendezvous port: the first host, unless overridden."""
    address = environ.get(MASTER_ADDR_ENV) or hosts.hosts[0]
    raw_port = environ.get(MASTER_PORT_ENV) or str(MASTER_PORT)
    try:
        port = int(raw_port)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise LaunchError(f"{MASTER_PORT_ENV} must be a TCP port 1-65535, got {raw_port!r}")
    return address, port


def relaunch(
    script: Path, argv: Sequence[str], environ: Mapping[str, str], hosts: Cluster | None = None
) -> int:
    """Run ``script argv`` under torchrun, one process per GPU; its exit code."""
    place = hosts or Cluster()
    command = torchrun_command(script, argv, environ, place)
    env = dict(environ)
    if place.multi_node and place.network_interface:
        # The interface SageMaker connects the instances on; NCCL and gloo may pick another.
        env.setdefault("NCCL_SOCKET_IFNAME", place.network_interface)
        env.setdefault("GLOO_SOCKET_IFNAME", place.network_interface)
    where = (
        f"node {place.node_rank + 1} of {place.nodes} ({place.current_host}), "
        if place.multi_node
        else ""
    )
    print(
        f"train: {where}{processes_wanted(environ)} process(es) here, relaunching under torchrun",
        flush=True,
    )
    process = subprocess.Popen(command, env=env)
    # A spot reclaim sends SIGTERM to this process on every instance: pass it on (torchrun
    # hands it to its ranks; any rank's stop vote stops all of them after the same step,
    # and rank 0 checkpoints) and wait for them instead of dying.
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
