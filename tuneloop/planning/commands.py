"""`tuneloop plan`: the per-GPU memory of a training run, and the instance type that holds it.

    tuneloop plan --base-model hf://HuggingFaceTB/SmolLM2-1.7B-Instruct --method lora \\
        --max-seq-length 1024 --batch-size 4 --instance-type ml.g5.2xlarge
    tuneloop plan --base-model ./my-model --method full --gpus 8 --sharding fsdp
    tuneloop plan --base-model ./my-model --method full --instance-type ml.g6e.12xlarge \\
        --instance-count 2 --sharding fsdp
    tuneloop plan --stage dev            # the stage's Train settings, as cdk synth checks them
    tuneloop plan --stage prod --checkpointing --json

``--base-model`` is a Hugging Face id (the planner's catalogue: nothing is downloaded) or a
folder holding the model's ``config.json``. Without ``--instance-type`` the smallest instance
type that fits is recommended. Settings not given are the trainer's defaults (or the stage's,
with ``--stage``). Exit status: 0 fits, 1 does not fit (or nothing fits), 2 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from typing import Any

from tuneloop.planning.estimate import (
    ATTENTIONS,
    GIB,
    METHODS,
    PRECISIONS,
    SHARDINGS,
    MemoryEstimate,
    Plan,
    PlanError,
    adapted_projections,
    count,
)
from tuneloop.planning.instances import GpuInstance, gpu_instance
from tuneloop.planning.shapes import shape_for
from tuneloop.planning.verdict import (
    DEFAULT_HEADROOM,
    DOES_NOT_FIT,
    Verdict,
    check,
    recommend,
    setup_from_hyperparameters,
)

OK, FAILURE, BAD_INPUT = 0, 1, 2
_PHASE_LABELS = {
    "run": "whole step",
    "forward": "forward",
    "recompute": "recompute",
    "backward": "backward",
}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``plan`` on the top-level subparsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "plan",
        help="estimate a training run's GPU memory and check or pick the instance type",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--base-model", help="a Hugging Face id or a model folder")
    parser.add_argument(
        "--stage", help="start from this stage's base model, Train settings and instance type"
    )
    parser.add_argument("--method", choices=METHODS, help="lora (default), qlora or full")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="compute precision (bf16); fp16 sizes as bf16 does (the trainer runs bf16 or fp32)",
    )
    parser.add_argument("--max-seq-length", type=int, help="tokens per row (256)")
    parser.add_argument("--batch-size", type=int, help="rows per micro-batch per GPU (4)")
    parser.add_argument("--gradient-accumulation-steps", type=int, help="micro-batches per step")
    parser.add_argument(
        "--checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="gradient checkpointing (off)",
    )
    parser.add_argument("--lora-r", type=int, help="LoRA rank (8)")
    parser.add_argument("--lora-dropout", type=float, help="LoRA dropout (0)")
    parser.add_argument("--lora-target-modules", help="auto, all-linear or module names")
    parser.add_argument(
        "--packing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="packed rows (on, the trainer's default)",
    )
    parser.add_argument("--attention", choices=ATTENTIONS, help="sdpa (default) or eager")
    parser.add_argument("--instance-type", help="check this SageMaker instance type")
    parser.add_argument("--gpus", type=int, help="GPUs, without --instance-type (1)")
    parser.add_argument(
        "--instance-count",
        type=int,
        help="instances of the job (1; the stage's training_instance_count with --stage)",
    )
    parser.add_argument(
        "--sharding", choices=SHARDINGS, help="none (default) or fsdp, over every GPU of the job"
    )
    parser.add_argument(
        "--headroom",
        type=float,
        default=DEFAULT_HEADROOM,
        help=f"share of GPU memory kept free ({DEFAULT_HEADROOM * 100:.0f}%%)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(func=run)
    return parser


_SETUP_FLAGS = {
    "method": "method",
    "precision": "precision",
    "max_seq_length": "max_seq_length",
    "batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "checkpointing": "gradient_checkpointing",
    "lora_r": "lora_r",
    "lora_dropout": "lora_dropout",
    "lora_target_modules": "lora_target_modules",
    "packing": "packing",
    "attention": "attention",
    "gpus": "gpus",
    "instance_count": "instances",
    "sharding": "sharding",
}


def run(args: argparse.Namespace) -> int:
    try:
        plan, instance_type = _plan(args)
        if not 0 <= args.headroom < 1:
            raise PlanError(f"--headroom must be in [0, 1), got {args.headroom}")
        verdict, plan, estimate, recommended = _judge(plan, instance_type, args.headroom)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    if args.json:
        print(json.dumps(_as_json(plan, estimate, verdict, recommended), indent=2))
    else:
        print(render(plan, estimate, verdict, recommended))
    if verdict is not None:
        return FAILURE if verdict.status == DOES_NOT_FIT else OK
    return OK if recommended is not None else FAILURE


def _plan(args: argparse.Namespace) -> tuple[Plan, str | None]:
    hyperparameters: dict[str, Any] = {}
    instance_type = args.instance_type
    instances = 1
    if args.stage:
        stage = _stage_config(args.stage)
        hyperparameters = {"base_model": stage.base_model, **dataclasses.asdict(stage.training)}
        instance_type = instance_type or stage.training_instance_type
        instances = stage.training_instance_count
    if args.base_model:
        hyperparameters["base_model"] = args.base_model
    if not hyperparameters.get("base_model"):
        raise PlanError("give --base-model (a Hugging Face id or a model folder) or --stage")
    from tuneloop.training.config import TrainingError

    try:
        _, setup = setup_from_hyperparameters(hyperparameters, instances=instances)
    except TrainingError as exc:
        raise PlanError(str(exc)) from None
    changes = {
        field: getattr(args, flag)
        for flag, field in _SETUP_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if changes.get("method") == "qlora" and "precision" not in changes:
        changes["precision"] = "bf16"
    setup = dataclasses.replace(setup, **changes)
    problems = setup.problems()
    if problems:
        raise PlanError("; ".join(problems))
    shape, reason = shape_for(str(hyperparameters["base_model"]))
    if shape is None:
        raise PlanError(reason)
    if shape.model_type == "gemma2" and args.attention is None:
        setup = dataclasses.replace(setup, attention="eager")
    return Plan(shape, setup), instance_type


def _stage_config(stage: str) -> Any:
    try:
        config = importlib.import_module("stacks.config")
    except ImportError:
        raise PlanError("--stage needs the CDK app's stacks/ (run from the repository)") from None
    try:
        return config.load_stage_config(stage, {})
    except config.ConfigError as exc:
        raise PlanError(str(exc)) from None


def _judge(
    plan: Plan, instance_type: str | None, headroom: float
) -> tuple[Verdict | None, Plan, MemoryEstimate, GpuInstance | None]:
    """The verdict on ``instance_type`` (or None), the plan and estimate to show (on that
    type's GPUs, else on the recommended type's), and the recommended type."""
    recommended = recommend(plan, headroom=headroom)
    verdict = check(plan, instance_type, headroom=headroom) if instance_type else None
    target = gpu_instance(instance_type) if instance_type else recommended
    shown = plan
    if target is not None and (instance_type or plan.setup.gpus == 1):
        several = target.gpus * plan.setup.instances > 1
        shown = plan.with_setup(
            gpus=target.gpus, sharding=plan.setup.sharding if several else "none"
        )
    estimate = verdict.estimate if verdict is not None and verdict.estimate else shown.estimate()
    return verdict, shown, estimate, recommended


def render(
    plan: Plan, estimate: MemoryEstimate, verdict: Verdict | None, recommended: GpuInstance | None
) -> str:
    shape, setup = plan.shape, plan.setup
    adapted = adapted_projections(shape, setup)
    if setup.method == "full":
        what = "full fine-tuning"
    else:
        names = ",".join(dict.fromkeys(p.name for p in adapted))
        what = f"{setup.method} r{setup.lora_r} on {names}"
    lines = [
        f"plan: {shape.name} ({count(shape.parameters)} parameters, {shape.model_type}, "
        f"{shape.num_layers} layers, hidden {shape.hidden_size}, vocab {shape.vocab_size})",
        f"  {what} ({count(estimate.trainable_parameters)} trained), "
        f"{setup.precision}{' autocast' if setup.autocast else ''}, "
        f"{setup.batch_size} x {setup.max_seq_length} tokens per micro-batch, "
        f"gradient checkpointing {'on' if setup.gradient_checkpointing else 'off'}, "
        f"packing {'on' if setup.packing else 'off'}",
        "",
        f"  {'per GPU':<24} {'GiB':>7}  {'held':<17}  what",
    ]
    for part in estimate.components:
        held = "+".join(_PHASE_LABELS[p] for p in part.lives)
        lines.append(f"  {part.name:<24} {part.bytes / GIB:>7.2f}  {held:<17}  {part.detail}")
    lines.append(
        f"  {'peak':<24} {estimate.peak_bytes / GIB:>7.2f}  "
        f"whole step {estimate.phase('run') / GIB:.2f} + {estimate.peak_phase} "
        f"{estimate.phase(estimate.peak_phase) / GIB:.2f}"
    )
    sharding = f", {setup.sharding} sharding" if setup.sharding != "none" else ""
    instances = f" x {setup.instances} instances" if setup.instances > 1 else ""
    lines.append(
        f"  on {setup.gpus} GPU(s){instances}{sharding}; host "
        f"memory while loading {estimate.host_bytes / GIB:.1f} GiB"
        + (" per instance" if instances else "")
    )
    lines.extend(f"  note: {note}" for note in estimate.notes)
    lines.append("")
    if verdict is not None and verdict.changes:
        lines.append(verdict.summary + ".")
        lines.append(
            "together, these make it fit:" if verdict.together else "any one of these fits:"
        )
        lines.extend(f"  - {change.describe()}" for change in verdict.changes)
    elif verdict is not None:
        lines.append(verdict.message)
    if recommended is not None:
        lines.append(f"smallest instance type that fits: {recommended.describe()}")
    else:
        lines.append("no instance type in the planner's table holds this plan")
    return "\n".join(lines)


def _as_json(
    plan: Plan, estimate: MemoryEstimate, verdict: Verdict | None, recommended: GpuInstance | None
) -> dict[str, Any]:
    return {
        "model": dataclasses.asdict(plan.shape) | {"parameters": plan.shape.parameters},
        "setup": dataclasses.asdict(plan.setup),
        "estimate": {
            "components": [dataclasses.asdict(c) for c in estimate.components],
            "peak_bytes": estimate.peak_bytes,
            "peak_phase": estimate.peak_phase,
            "host_bytes": estimate.host_bytes,
            "trainable_parameters": estimate.trainable_parameters,
            "notes": list(estimate.notes),
        },
        "verdict": None
        if verdict is None
        else {
            "status": verdict.status,
            "instance_type": verdict.instance_type,
            "message": verdict.message,
            "budget_bytes": verdict.budget_bytes,
            "host_budget_bytes": verdict.host_budget_bytes,
            "changes": [dataclasses.asdict(c) for c in verdict.changes],
        },
        "recommended": recommended.instance_type if recommended is not None else None,
    }
