"""Does a plan fit an instance type's GPUs, what to change when it does not, which type fits.

:func:`check` compares the per-GPU estimate with the GPU's memory less a headroom fraction
(default 10%: the driver's reservations, allocator fragmentation and the estimate's own
error), and the host's memory with the fp32 model each GPU process loads. When it does not
fit, the verdict names the changes that would make it fit, each checked with the same
estimate: gradient checkpointing, a smaller micro-batch (with more accumulation, so the
effective batch stays), LoRA or QLoRA instead of full fine-tuning, FSDP sharding over more
GPUs, a bigger instance type. :func:`recommend` returns the smallest type that fits.
:func:`check_training` does the same for the trainer's hyperparameters (``TrainConfig``),
which is how ``cdk synth`` checks a stage.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tuneloop.planning.estimate import (
    DEFAULT_OVERHEAD_BYTES,
    GIB,
    MemoryEstimate,
    Plan,
    PlanError,
    TrainingSetup,
)
from tuneloop.planning.instances import GPU_INSTANCES, GpuInstance, gpu_instance, is_cpu_instance
from tuneloop.planning.shapes import ModelShape, shape_for

DEFAULT_HEADROOM = 0.10
FITS, DOES_NOT_FIT, SKIPPED = "fits", "does_not_fit", "skipped"


@dataclass(frozen=True)
class Change:
    """A change that makes the plan fit, with the estimate it gives."""

    setting: str
    value: str
    peak_bytes: int
    note: str = ""
    also: tuple[str, ...] = ()
    """Further settings the change sets (the note says to what)."""

    def describe(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"{self.setting} {self.value} -> {gib(self.peak_bytes)} per GPU{note}"


@dataclass(frozen=True)
class Verdict:
    status: str
    """``fits``, ``does_not_fit`` or ``skipped`` (no GPU plan possible: the reason says why)."""
    instance_type: str
    message: str
    estimate: MemoryEstimate | None = None
    budget_bytes: int = 0
    """Per GPU: its memory less the headroom."""
    host_budget_bytes: int = 0
    changes: tuple[Change, ...] = ()
    """Each makes the plan fit by itself, or (``together``) only all of them at once."""
    summary: str = ""
    """The message without the advice."""
    together: bool = False

    @property
    def fits(self) -> bool:
        return self.status == FITS


def gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def ordered_instances(candidates: Iterable[GpuInstance] = GPU_INSTANCES) -> list[GpuInstance]:
    """Smallest first: by total GPU memory, then host memory (table order breaks ties)."""
    listed = list(candidates)
    return sorted(
        listed,
        key=lambda i: (i.total_gpu_memory_gib, i.host_memory_gib, listed.index(i)),
    )


def _on(plan: Plan, instance: GpuInstance) -> Plan:
    """The plan as it runs on the job's instances of ``instance``: one training process per
    GPU, FSDP over all of them (one process alone trains unsharded)."""
    sharding = plan.setup.sharding if instance.gpus * plan.setup.instances > 1 else "none"
    return plan.with_setup(gpus=instance.gpus, sharding=sharding)


def _fleet(instance: GpuInstance, instances: int) -> str:
    """``ml.g5.2xlarge (1 x A10G 24 GiB)``, and how many of them when several."""
    return instance.describe() + (f" x {instances} instances" if instances > 1 else "")


def _fits(
    plan: Plan, instance: GpuInstance, headroom: float, overhead: int
) -> tuple[bool, MemoryEstimate]:
    est = _on(plan, instance).estimate(overhead_bytes=overhead)
    gpu_ok = est.peak_bytes <= instance.gpu_memory_gib * GIB * (1 - headroom)
    host_ok = est.host_bytes <= instance.host_memory_gib * GIB * (1 - headroom)
    return gpu_ok and host_ok, est


def recommend(
    plan: Plan,
    *,
    headroom: float = DEFAULT_HEADROOM,
    overhead_bytes: int | None = None,
    candidates: Iterable[GpuInstance] = GPU_INSTANCES,
) -> GpuInstance | None:
    """The smallest instance type whose GPUs (and host) hold ``plan``, or None."""
    overhead = _overhead(overhead_bytes)
    for instance in ordered_instances(candidates):
        if _fits(plan, instance, headroom, overhead)[0]:
            return instance
    return None


def check(
    plan: Plan,
    instance_type: str,
    *,
    headroom: float = DEFAULT_HEADROOM,
    overhead_bytes: int | None = None,
) -> Verdict:
    """Whether ``plan`` fits ``instance_type``; if not, the message names what to change."""
    instance = gpu_instance(instance_type)
    if instance is None:
        return Verdict(SKIPPED, instance_type, _not_planned(instance_type))
    overhead = _overhead(overhead_bytes)
    fits, est = _fits(plan, instance, headroom, overhead)
    fleet = _fleet(instance, plan.setup.instances)
    budget = math.floor(instance.gpu_memory_gib * GIB * (1 - headroom))
    host_budget = math.floor(instance.host_memory_gib * GIB * (1 - headroom))
    usage = (
        f"{gib(est.peak_bytes)} per GPU estimated, {gib(budget)} usable "
        f"({1 - headroom:.0%} of {instance.gpu_memory_gib:g} GiB)"
    )
    if fits:
        return Verdict(FITS, instance_type, f"{fleet} fits: {usage}", est, budget, host_budget)
    changes = suggest(plan, instance, headroom=headroom, overhead_bytes=overhead)
    reasons = []
    if est.peak_bytes > budget:
        reasons.append(f"{usage}; largest parts: {_largest(est)}")
    if est.host_bytes > host_budget:
        reasons.append(
            f"loading needs {gib(est.host_bytes)} of host memory per instance (the fp32 "
            "model: once per GPU process, or once with sharding fsdp), "
            f"{gib(host_budget)} usable of "
            f"{instance.host_memory_gib:g} GiB"
        )
    together = False
    if changes:
        advice = "change one of: " + "; ".join(c.describe() for c in changes)
    else:
        changes = combined_changes(plan, headroom=headroom, overhead_bytes=overhead)
        together = bool(changes)
        advice = (
            "no single change makes it fit; together: "
            + ", ".join(
                f"{c.setting} {c.value}" + (f" ({c.note})" if c.note else "") for c in changes
            )
            + f" -> {gib(changes[-1].peak_bytes)} per GPU"
            if changes
            else "no instance type in the planner's table holds it, whatever the settings"
        )
    summary = f"{fleet} cannot hold this training: {'; '.join(reasons)}"
    return Verdict(
        DOES_NOT_FIT,
        instance_type,
        f"{summary}. {advice}",
        est,
        budget,
        host_budget,
        changes,
        summary=summary,
        together=together,
    )


def _not_planned(instance_type: str) -> str:
    if is_cpu_instance(instance_type):
        return (
            f"{instance_type} is a CPU instance type: training runs in host memory there, "
            "which the GPU planner does not check"
        )
    return f"{instance_type} is not in the planner's GPU table (tuneloop/planning/instances.py)"


def _largest(est: MemoryEstimate, count: int = 3) -> str:
    parts = sorted(est.components, key=lambda c: -c.bytes)[:count]
    return ", ".join(f"{c.name} {gib(c.bytes)}" for c in parts)


def _overhead(value: int | None) -> int:
    return DEFAULT_OVERHEAD_BYTES if value is None else value


def suggest(
    plan: Plan, instance: GpuInstance, *, headroom: float, overhead_bytes: int
) -> tuple[Change, ...]:
    """Each single change that makes ``plan`` fit ``instance`` (or the smallest type that
    holds it unchanged), cheapest in behaviour first."""
    setup = plan.setup
    found: list[Change] = []

    def attempt(
        setting: str, value: str, changed: Plan, note: str = "", also: tuple[str, ...] = ()
    ) -> bool:
        try:
            ok, est = _fits(changed, instance, headroom, overhead_bytes)
        except PlanError:
            return False
        if ok:
            found.append(Change(setting, value, est.peak_bytes, note, also))
        return ok

    if not setup.gradient_checkpointing:
        attempt(
            "gradient_checkpointing",
            "true",
            plan.with_setup(gradient_checkpointing=True),
            "the backward pass recomputes activations, ~30% slower",
        )
    batch = setup.batch_size // 2
    while batch >= 1:
        factor = math.ceil(setup.batch_size / batch)
        steps = setup.gradient_accumulation_steps * factor
        changed = plan.with_setup(batch_size=batch, gradient_accumulation_steps=steps)
        if attempt(
            "per_device_batch_size",
            str(batch),
            changed,
            f"with gradient_accumulation_steps {steps} for the same effective batch",
            ("gradient_accumulation_steps",),
        ):
            break
        batch //= 2
    if setup.method == "full":
        attempt("finetune_method", "lora", plan.with_setup(method="lora"))
    if setup.method in ("full", "lora"):
        value, also = _qlora_change(setup)
        attempt(
            "quantize_4bit",
            value,
            _qlora(plan),
            "needs bitsandbytes in the training image",
            also,
        )
    if setup.sharding == "none":
        found.extend(_sharding_change(plan, instance, headroom, overhead_bytes))
    other = recommend(plan, headroom=headroom, overhead_bytes=overhead_bytes)
    if other is not None and other.instance_type != instance.instance_type:
        est = _on(plan, other).estimate(overhead_bytes=overhead_bytes)
        found.append(_instance_change(plan, other, est.peak_bytes))
    return tuple(found)


def _instance_change(plan: Plan, instance: GpuInstance, peak_bytes: int) -> Change:
    """A change to ``instance``; a sharded plan that then runs in one process also needs
    sharding none (FSDP has nothing to shard over)."""
    fleet = _fleet(instance, plan.setup.instances)
    if plan.setup.sharding == "fsdp" and _on(plan, instance).setup.sharding == "none":
        return Change(
            "training_instance_type", fleet, peak_bytes, "with sharding none", ("sharding",)
        )
    return Change("training_instance_type", fleet, peak_bytes)


def _sharding_change(
    plan: Plan, instance: GpuInstance, headroom: float, overhead_bytes: int
) -> list[Change]:
    """FSDP on ``instance`` (when the job has several processes) or on the smallest type of
    the same GPU with more of them that then holds the plan."""
    instances = plan.setup.instances
    same_gpu = [
        other
        for other in ordered_instances(GPU_INSTANCES)
        if other.gpu == instance.gpu and other.gpus >= instance.gpus and other.gpus * instances >= 2
    ]
    for target in same_gpu:
        ok, est = _fits(plan.with_setup(sharding="fsdp"), target, headroom, overhead_bytes)
        if not ok:
            continue
        moved = target is not instance
        where = f" on {target.describe()}" if moved else ""
        note = f"weights, gradients and optimizer state divided over {target.gpus * instances} GPUs"
        also = ("training_instance_type",) if moved else ()
        return [Change("sharding", f"fsdp{where}", est.peak_bytes, note, also)]
    return []


def _qlora_change(setup: TrainingSetup) -> tuple[str, tuple[str, ...]]:
    """The value and further settings of a change to QLoRA from ``setup``: from full
    fine-tuning also finetune_method lora, from a sharded run also sharding none (the
    trainer requires both; it does not shard 4-bit weights)."""
    extra: list[tuple[str, str]] = []
    if setup.method == "full":
        extra.append(("finetune_method", "lora"))
    if setup.sharding == "fsdp":
        extra.append(("sharding", "none"))
    if not extra:
        return "true (QLoRA)", ()
    settings = " and ".join(f"{name} {value}" for name, value in extra)
    return f"true (QLoRA, with {settings})", tuple(name for name, _ in extra)


def _qlora(plan: Plan) -> Plan:
    return plan.with_setup(method="qlora", precision="bf16", sharding="none")


def _fsdp_unless_qlora(plan: Plan) -> Plan:
    # The trainer does not shard 4-bit weights: with QLoRA this change is a no-op, which
    # combined_changes then drops.
    return plan if plan.setup.method == "qlora" else plan.with_setup(sharding="fsdp")


_Transform = tuple[str, str, str, tuple[str, ...], Callable[[Plan], Plan]]


def _transforms(setup: TrainingSetup) -> list[_Transform]:
    """Changes to try together, the cheapest in behaviour first, FSDP (more GPUs) last:
    ``(setting, value, note, further settings, apply)``."""
    found: list[_Transform] = []
    if not setup.gradient_checkpointing:
        found.append(
            (
                "gradient_checkpointing",
                "true",
                "",
                (),
                lambda p: p.with_setup(gradient_checkpointing=True),
            )
        )
    if setup.batch_size > 1:
        steps = setup.gradient_accumulation_steps * setup.batch_size
        found.append(
            (
                "per_device_batch_size",
                "1",
                f"gradient_accumulation_steps {steps}",
                ("gradient_accumulation_steps",),
                lambda p: p.with_setup(batch_size=1, gradient_accumulation_steps=steps),
            )
        )
    if setup.method == "full":
        found.append(("finetune_method", "lora", "", (), lambda p: p.with_setup(method="lora")))
    if setup.method != "qlora":
        value, also = _qlora_change(setup)
        found.append(("quantize_4bit", value, "", also, _qlora))
    if setup.sharding == "none":
        found.append(("sharding", "fsdp", "", (), _fsdp_unless_qlora))
    return found


def combined_changes(
    plan: Plan, *, headroom: float = DEFAULT_HEADROOM, overhead_bytes: int | None = None
) -> tuple[Change, ...]:
    """The fewest of :func:`_transforms` that, together with the smallest instance type
    that then fits, hold ``plan`` (the instance type last); empty when none do."""
    overhead = _overhead(overhead_bytes)
    transforms = _transforms(plan.setup)

    def apply(chosen: list[_Transform]) -> Plan:
        changed = plan
        for *_, transform in chosen:
            changed = transform(changed)
        return changed

    chosen: list[_Transform] | None = None
    for count in range(1, len(transforms) + 1):
        if recommend(apply(transforms[:count]), headroom=headroom, overhead_bytes=overhead):
            chosen = transforms[:count]
            break
    if chosen is None:
        return ()
    for item in list(chosen):  # drop what the fit does not need
        rest = [other for other in chosen if other is not item]
        if recommend(apply(rest), headroom=headroom, overhead_bytes=overhead):
            chosen = rest
    changed = apply(chosen)
    instance = recommend(changed, headroom=headroom, overhead_bytes=overhead)
    assert instance is not None
    peak = _on(changed, instance).estimate(overhead_bytes=overhead).peak_bytes
    return (
        *(Change(setting, value, peak, note, also) for setting, value, note, also, _ in chosen),
        _instance_change(changed, instance, peak),
    )


def setup_from_hyperparameters(
    hyperparameters: Mapping[str, Any], *, gpus: int = 1, instances: int = 1
) -> Any:
    """The trainer's ``TrainConfig`` for ``hyperparameters`` (its defaults fill the rest)
    and the setup it runs on ``instances`` instances of ``gpus`` GPUs: ``precision auto`` is
    bf16 there (every GPU in the table has fast bf16), Gemma 2 trains with eager attention."""
    from tuneloop.training.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in hyperparameters.items() if k in names}).validate()
    method = "qlora" if config.quantize_4bit else config.finetune_method
    return config, TrainingSetup(
        method=method,
        precision="fp32" if config.precision == "fp32" else "bf16",
        max_seq_length=config.max_seq_length,
        batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        gradient_checkpointing=config.gradient_checkpointing,
        lora_r=config.lora_r,
        lora_dropout=config.lora_dropout,
        lora_target_modules=config.lora_target_modules,
        gpus=gpus,
        instances=instances,
        sharding=config.sharding,
        packing=config.packing,
        attention=config.attn_implementation,
    )


def check_training(
    hyperparameters: Mapping[str, Any],
    instance_type: str,
    *,
    instance_count: int = 1,
    headroom: float = DEFAULT_HEADROOM,
    shape: ModelShape | None = None,
) -> Verdict:
    """The verdict for a Train job: the trainer's hyperparameters (``base_model`` and
    ``sharding`` among them) on ``instance_count`` instances of ``instance_type``; skipped,
    with the reason, when the model's size is unknown or the type is not a planned-for GPU
    type. ``shape`` is the base model's, when the caller has read its config (an ``s3://``
    model at run time)."""
    from tuneloop.training.config import TrainingError

    if gpu_instance(instance_type) is None:
        return Verdict(SKIPPED, instance_type, _not_planned(instance_type))
    try:
        config, setup = setup_from_hyperparameters(hyperparameters, instances=instance_count)
    except (TrainingError, TypeError) as exc:
        return Verdict(SKIPPED, instance_type, f"the hyperparameters are invalid: {exc}")
    if shape is None:
        shape, reason = shape_for(config.base_model)
        if shape is None:
            return Verdict(SKIPPED, instance_type, f"base model size unknown: {reason}")
    if shape.model_type == "gemma2":
        setup = dataclasses.replace(setup, attention="eager")
    try:
        return check(Plan(shape, setup), instance_type, headroom=headroom)
    except PlanError as exc:
        return Verdict(SKIPPED, instance_type, f"cannot plan {config.base_model}: {exc}")
