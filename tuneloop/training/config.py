"""Training hyperparameters: one dataclass, parsed from SageMaker's three sources.

SageMaker hands hyperparameters to the entry point as ``--name value`` arguments, as the
``SM_HPS`` JSON and in ``<input config dir>/hyperparameters.json`` (values JSON-encoded as
strings). Later sources win: defaults < hyperparameters.json < SM_HPS < command line.
Unknown names fail (a typo must not silently train with a default); SageMaker's own
``sagemaker_*`` keys are ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints


class TrainingError(ValueError):
    """A problem with the job's input (hyperparameters, data, model): no traceback needed."""


def _hp(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class TrainConfig:
    """SFT hyperparameters (each is a ``--name value`` argument)."""

    base_model: str = _hp(
        "smollm2-135m-instruct",
        "model reference: smollm2-135m-instruct, hf://<id>, s3://..., or a local folder",
    )
    finetune_method: str = _hp(
        "lora", "lora (train a LoRA adapter) or full (train every weight, save the whole model)"
    )
    quantize_4bit: bool = _hp(
        False, "QLoRA: load the base in 4-bit NF4 (CUDA GPU and bitsandbytes only)"
    )
    max_steps: int = _hp(10, "optimizer steps to run")
    learning_rate: float = _hp(2e-4, "peak AdamW learning rate (linear warmup, linear decay)")
    warmup_steps: int = _hp(0, "linear warmup steps")
    weight_decay: float = _hp(0.0, "AdamW weight decay on the trained parameters")
    max_grad_norm: float = _hp(1.0, "gradient clipping norm (0 disables clipping)")
    lora_r: int = _hp(8, "LoRA rank")
    lora_alpha: int = _hp(16, "LoRA alpha (scaling = alpha / r)")
    # 0 by default: on CPU the dropout masks cost ~8% of a step, and short runs gain nothing.
    lora_dropout: float = _hp(0.0, "dropout on the LoRA input")
    lora_target_modules: str = _hp(
        "auto",
        "auto (the model family's attention and MLP projections; docs/training.md lists the "
        "families), all-linear, or comma-separated module names to adapt",
    )
    max_seq_length: int = _hp(256, "tokens per example; longer examples are truncated")
    per_device_batch_size: int = _hp(4, "examples per micro-batch")
    gradient_accumulation_steps: int = _hp(1, "micro-batches per optimizer step")
    seed: int = _hp(42, "seed for data order, LoRA init and dropout")
    num_threads: int = _hp(0, "torch CPU threads; 0 = the CPUs this process may use")
    precision: str = _hp(
        "auto", "fp32, bf16 (autocast) or auto: bf16 where the hardware has fast bf16 matmuls"
    )
    model_version: str = _hp("", "recorded in tuneloop_model.json; serving reports it")
    checkpoint_dir: str = _hp("/opt/ml/checkpoints", "where spot-resume checkpoints go")
    checkpoint_steps: int = _hp(0, "save a resumable checkpoint every N steps; 0 = never")
    packing: bool = _hp(
        True,
        "pack each step's examples into rows of max_seq_length (position ids restart per "
        "example, so no example attends to another); no padding compute",
    )
    group_by_length: bool = _hp(
        True, "order examples by length within windows of steps so micro-batches pad less"
    )
    gradient_checkpointing: bool = _hp(
        False, "recompute activations in the backward pass: less memory, ~30% slower"
    )
    sharding: str = _hp(
        "none",
        "none (every process holds the whole model) or fsdp (FSDP2: weights, gradients and "
        "optimizer state sharded over the processes)",
    )
    attn_implementation: str = _hp("sdpa", "attention kernel: sdpa (default) or eager")
    init_adapter: str = _hp(
        "",
        "continue training this adapter (S3 URI or local path of a model.tar.gz or adapter "
        "folder, e.g. the production model); empty = a fresh LoRA adapter",
    )
    replay_fraction: float = _hp(
        0.0, "share of the training records drawn from the optional replay channel, in [0, 1)"
    )
    stop_after_steps: int = _hp(
        0,
        "stop as a spot interruption would after N steps (checkpoint saved, exit 1); "
        "for tests of resume; 0 = never",
    )

    def validate(self) -> TrainConfig:
        """Return self, or raise TrainingError naming the first bad value."""
        positive = (
            "max_steps",
            "lora_r",
            "lora_alpha",
            "per_device_batch_size",
            "gradient_accumulation_steps",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise TrainingError(
                    f"hyperparameter {name} must be >= 1, got {getattr(self, name)}"
                )
        non_negative = (
            "warmup_steps",
            "weight_decay",
            "max_grad_norm",
            "num_threads",
            "checkpoint_steps",
            "stop_after_steps",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise TrainingError(
                    f"hyperparameter {name} must be >= 0, got {getattr(self, name)}"
                )
        if not self.learning_rate > 0:
            raise TrainingError(
                f"hyperparameter learning_rate must be > 0, got {self.learning_rate}"
            )
        if not 0 <= self.lora_dropout < 1:
            raise TrainingError(
                f"hyperparameter lora_dropout must be in [0, 1), got {self.lora_dropout}"
            )
        if not 0 <= self.replay_fraction < 1:
            raise TrainingError(
                f"hyperparameter replay_fraction must be in [0, 1), got {self.replay_fraction}"
            )
        if self.finetune_method not in ("lora", "full"):
            raise TrainingError(
                f"hyperparameter finetune_method must be lora or full, got {self.finetune_method!r}"
            )
        if self.finetune_method == "full" and self.quantize_4bit:
            raise TrainingError(
                "hyperparameter quantize_4bit (QLoRA) trains a LoRA adapter over a 4-bit base: "
                "it needs finetune_method lora, got full"
            )
        if self.finetune_method == "full" and self.init_adapter:
            raise TrainingError(
                "hyperparameter init_adapter continues a LoRA adapter: it needs finetune_method "
                "lora (to continue a fully fine-tuned model, pass it as base_model)"
            )
        if self.sharding not in ("none", "fsdp"):
            raise TrainingError(
                f"hyperparameter sharding must be none or fsdp, got {self.sharding!r}"
            )
        if self.sharding == "fsdp" and self.quantize_4bit:
            raise TrainingError(
                "hyperparameter sharding fsdp does not support quantize_4bit (QLoRA): "
                "bitsandbytes' 4-bit weights cannot be sharded here; use one of the two"
            )
        if self.attn_implementation not in ("sdpa", "eager"):
            raise TrainingError(
                "hyperparameter attn_implementation must be sdpa or eager, "
                f"got {self.attn_implementation!r}"
            )
        if self.max_seq_length < 8:
            raise TrainingError(
                f"hyperparameter max_seq_length must be >= 8, got {self.max_seq_length}"
            )
        if self.precision not in ("auto", "fp32", "bf16"):
            raise TrainingError(
                f"hyperparameter precision must be auto, fp32 or bf16, got {self.precision!r}"
            )
        if not self.base_model.strip():
            raise TrainingError("hyperparameter base_model is empty")
        return self

    def target_modules(self) -> str | list[str]:
        """``auto``, ``all-linear`` or a list of names (``families.lora_targets`` resolves them)."""
        names = [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]
        if names in (["auto"], ["all-linear"]):
            return names[0]
        if not names:
            raise TrainingError("hyperparameter lora_target_modules is empty")
        return names


def _field_types() -> dict[str, type]:
    return {f.name: get_type_hints(TrainConfig)[f.name] for f in dataclasses.fields(TrainConfig)}


def _convert(name: str, value: Any, target: type) -> Any:
    if isinstance(value, str) and value.startswith('"'):
        # hyperparameters.json holds JSON-encoded strings ("\"smollm2-135m-instruct\"").
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    try:
        if target is bool:
            return _to_bool(value)
        if target is int:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, bool) or not float(number).is_integer():
                raise ValueError("not an integer")
            return int(number)
        if target is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        expected = "true or false" if target is bool else target.__name__
        raise TrainingError(f"hyperparameter {name}={value!r}: expected {expected}") from exc


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="LoRA SFT under the SageMaker training contract.",
        exit_on_error=False,
        allow_abbrev=False,
    )
    for f in dataclasses.fields(TrainConfig):
        # Strings here; _convert types them so all three sources share one conversion.
        parser.add_argument(f"--{f.name}", dest=f.name, default=None, help=f.metadata["help"])
    return parser


def parse_hyperparameters(
    argv: Sequence[str], environ: Mapping[str, str], input_config_dir: Path
) -> TrainConfig:
    """Merge hyperparameters.json, ``SM_HPS`` and ``argv`` into a validated TrainConfig."""
    raw: dict[str, Any] = {}
    hp_file = input_config_dir / "hyperparameters.json"
    if hp_file.is_file():
        raw.update(_load_json_object(hp_file.read_text(encoding="utf-8"), str(hp_file)))
    if environ.get("SM_HPS"):
        raw.update(_load_json_object(environ["SM_HPS"], "SM_HPS"))

    try:
        args, unknown = build_parser().parse_known_args(list(argv))
    except argparse.ArgumentError as exc:
        raise TrainingError(f"bad hyperparameter arguments: {exc}") from exc
    extra: list[str] = []
    skip_value = False
    for token in unknown:
        if skip_value:  # the value of an ignored --sagemaker_* flag
            skip_value = False
        elif token.startswith("--sagemaker_"):
            skip_value = "=" not in token
        else:
            extra.append(token)
    if extra:
        raise TrainingError(
            f"unknown hyperparameter argument(s) {extra}; known: "
            f"{', '.join(f.name for f in dataclasses.fields(TrainConfig))}"
        )
    raw.update({k: v for k, v in vars(args).items() if v is not None})

    types = _field_types()
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name.startswith("sagemaker_"):
            continue
        if name not in types:
            raise TrainingError(f"unknown hyperparameter {name!r}; known: {', '.join(types)}")
        values[name] = _convert(name, value, types[name])
    return TrainConfig(**values).validate()


def _load_json_object(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TrainingError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TrainingError(f"{source} must be a JSON object")
    return data
