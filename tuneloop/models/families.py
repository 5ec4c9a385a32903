"""The causal-LM families TuneLoop trains, evaluates and serves, keyed by ``config.model_type``.

A family says which modules a LoRA adapter targets when ``lora_target_modules`` is ``auto``
(the default): every projection of the attention and MLP blocks, by the names that family
uses. Most families name them as Llama does; Phi-3 fuses q/k/v (``qkv_proj``) and gate/up
(``gate_up_proj``); GPT-2 fuses q/k/v into ``c_attn`` and its layers are ``Conv1D`` (weights
stored transposed), so peft needs ``fan_in_fan_out=True``.

Why a table of our own rather than peft's ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``:
in peft 0.21 that mapping targets the attention's q/v only (``c_attn`` for GPT-2) and has no
``phi3`` entry, while TuneLoop has always adapted every linear layer (its earlier default was
peft's ``all-linear``); the table keeps that and names the modules, so an unknown
architecture fails here instead of being adapted by guesswork.

``lmi_lora``: vLLM (the LMI backend) serves LoRA adapters for this architecture. Its
supported-models table has no LoRA support for ``GPT2LMHeadModel``, so a GPT-2 adapter is
served by the ``tuneloop`` backend, or trained with ``finetune_method full``.

Pure data: the Register Lambda (LMI repack) imports this without torch or transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

AUTO = "auto"
ALL_LINEAR = "all-linear"

_LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: tuple[str, ...]
    target_modules: tuple[str, ...]
    fan_in_fan_out: bool = False
    lmi_lora: bool = True


FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily("Llama (Llama 2/3, SmolLM2)", ("llama",), _LLAMA_STYLE),
    ModelFamily("Mistral", ("mistral",), _LLAMA_STYLE),
    ModelFamily("Qwen2 / Qwen2.5", ("qwen2",), _LLAMA_STYLE),
    ModelFamily("Qwen3", ("qwen3",), _LLAMA_STYLE),
    ModelFamily("Gemma 2", ("gemma2",), _LLAMA_STYLE),
    ModelFamily("Gemma 3 (text)", ("gemma3_text",), _LLAMA_STYLE),
    ModelFamily("Phi-3 / Phi-3.5", ("phi3",), ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")),
    ModelFamily(
        "GPT-2", ("gpt2",), ("c_attn", "c_proj", "c_fc"), fan_in_fan_out=True, lmi_lora=False
    ),
)


class UnsupportedModelError(ValueError):
    """The model's type has no entry here; the message names it and the supported ones."""


def supported_model_types() -> list[str]:
    return sorted(t for family in FAMILIES for t in family.model_types)


def family_of(model_type: str) -> ModelFamily | None:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return None


@dataclass(frozen=True)
class LoraTargets:
    """peft's ``target_modules`` (a list, or the string ``all-linear``) and ``fan_in_fan_out``."""

    target_modules: str | tuple[str, ...]
    fan_in_fan_out: bool


def lora_targets(model_type: str, requested: str | Sequence[str]) -> LoraTargets:
    """The modules to adapt in a model of ``model_type``.

    ``requested`` is ``auto`` (the family's modules; an unknown family fails),
    ``all-linear`` or explicit names (used as given, for any model type).
    """
    family = family_of(model_type)
    fan_in_fan_out = family.fan_in_fan_out if family else False
    if requested == AUTO:
        if family is None:
            raise UnsupportedModelError(
                f"model type {model_type!r} is not a supported family for "
                f"lora_target_modules auto; supported: {', '.join(supported_model_types())}. "
                "Set lora_target_modules to the module names to adapt (comma-separated) "
                "or to all-linear"
            )
        return LoraTargets(family.target_modules, fan_in_fan_out)
    if requested == ALL_LINEAR:
        return LoraTargets(ALL_LINEAR, fan_in_fan_out)
    return LoraTargets(tuple(requested), fan_in_fan_out)


def lmi_lora_problem(model_type: str) -> str | None:
    """Why LMI (vLLM) cannot serve a LoRA adapter over ``model_type``, or None if it can.

    An unknown type is not refused: vLLM may support it, and its own error is clear enough.
    """
    family = family_of(model_type)
    if family is None or family.lmi_lora:
        return None
    return (
        f"vLLM (the LMI backend) does not serve LoRA adapters for model type {model_type!r} "
        f"({family.name}); serve it with serving_backend tuneloop, or train it with "
        "finetune_method full"
    )
