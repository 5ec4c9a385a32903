"""SageMaker GPU instance types: how many GPUs, how much memory each has, and host memory.

The numbers are AWS's (docs/training.md, "Capacity planning", cites the pages): memory per
GPU as AWS lists it (nominal GiB; the driver reports a few percent less, which the check's
headroom absorbs), and the instance's host memory, which must hold the fp32 model while each
training process loads it. Only the training instance families TuneLoop plans for are here;
another type is reported as not planned for, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstance:
    instance_type: str
    gpu: str
    gpus: int
    gpu_memory_gib: float
    """Per GPU."""
    host_memory_gib: float

    @property
    def total_gpu_memory_gib(self) -> float:
        return self.gpus * self.gpu_memory_gib

    def describe(self) -> str:
        return f"{self.instance_type} ({self.gpus} x {self.gpu} {self.gpu_memory_gib:g} GiB)"


def _family(
    family: str, gpu: str, memory: float, sizes: tuple[tuple[str, int, float], ...]
) -> tuple[GpuInstance, ...]:
    return tuple(
        GpuInstance(f"ml.{family}.{size}", gpu, gpus, memory, host) for size, gpus, host in sizes
    )


# (size, GPUs, host memory GiB). G5 and G6 share their sizes' host memory.
_G5_G6_SIZES = (
    ("xlarge", 1, 16),
    ("2xlarge", 1, 32),
    ("4xlarge", 1, 64),
    ("8xlarge", 1, 128),
    ("16xlarge", 1, 256),
    ("12xlarge", 4, 192),
    ("24xlarge", 4, 384),
    ("48xlarge", 8, 768),
)
_G6E_SIZES = (
    ("xlarge", 1, 32),
    ("2xlarge", 1, 64),
    ("4xlarge", 1, 128),
    ("8xlarge", 1, 256),
    ("16xlarge", 1, 512),
    ("12xlarge", 4, 384),
    ("24xlarge", 4, 768),
    ("48xlarge", 8, 1536),
)

GPU_INSTANCES: tuple[GpuInstance, ...] = (
    *_family("g5", "A10G", 24, _G5_G6_SIZES),
    *_family("g6", "L4", 24, _G5_G6_SIZES),
    *_family("g6e", "L40S", 48, _G6E_SIZES),
    GpuInstance("ml.p4d.24xlarge", "A100", 8, 40, 1152),
    GpuInstance("ml.p4de.24xlarge", "A100", 8, 80, 1152),
    GpuInstance("ml.p5.48xlarge", "H100", 8, 80, 2048),
)
"""Every planned-for GPU training instance type, smallest family first."""

_BY_TYPE = {instance.instance_type: instance for instance in GPU_INSTANCES}
# SageMaker's CPU-only families (general purpose, compute and memory optimized, burstable).
_CPU_FAMILY = re.compile(r"^ml\.(m|c|r|t|x|z)\d+[a-z]*\.")


def gpu_instance(instance_type: str) -> GpuInstance | None:
    return _BY_TYPE.get(instance_type)


def is_cpu_instance(instance_type: str) -> bool:
    """True for CPU-only types such as ``ml.m5.xlarge`` (the local stage names those)."""
    return bool(_CPU_FAMILY.match(instance_type))
