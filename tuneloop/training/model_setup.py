"""The model a run trains: the base (plain, or 4-bit for QLoRA) and its trainable parameters.

- ``lora``: a fresh LoRA adapter, or ``init_adapter`` continued (``adapters.py``).
- ``full``: every weight of the base trains; the whole model is saved.
- ``quantize_4bit`` (QLoRA): the base is loaded in 4-bit NF4 through bitsandbytes and
  prepared with peft's ``prepare_model_for_kbit_training``; bitsandbytes' 4-bit kernels run
  on CUDA only, so asking for it elsewhere fails before anything is loaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch

from tuneloop.models.catalog import resolve_model
from tuneloop.models.loading import is_adapter_dir, load_model_dir
from tuneloop.training.adapters import (
    continued_adapter,
    fetch_adapter,
    live_adapter_digest,
    new_adapter,
)
from tuneloop.training.config import TrainConfig, TrainingError

Log = Callable[[str], None]


def check_quantization_support(config: TrainConfig, device: torch.device) -> None:
    """Raise TrainingError when ``quantize_4bit`` cannot run here (no CUDA, no bitsandbytes)."""
    if not config.quantize_4bit:
        return
    if device.type != "cuda":
        raise TrainingError(
            "hyperparameter quantize_4bit (QLoRA) needs a CUDA GPU and this job has none "
            f"(device {device.type}); use a GPU instance or set quantize_4bit to false"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainingError(
            "hyperparameter quantize_4bit (QLoRA) needs the bitsandbytes package, which is not "
            "installed; add bitsandbytes to the training image or set quantize_4bit to false"
        )


def load_base(config: TrainConfig, device: torch.device) -> tuple[Any, Any]:
    """``(base model on device, tokenizer)``; 4-bit and prepared for training with QLoRA."""
    check_quantization_support(config, device)
    path = resolve_model(config.base_model)
    if not config.quantize_4bit:
        model: Any
        model, tokenizer = load_model_dir(path, merge=True)
        model.set_attn_implementation(attention_for(type(model), config.attn_implementation))
        return model.to(device), tokenizer
    if is_adapter_dir(path):
        raise TrainingError(
            f"quantize_4bit needs a plain Hugging Face base model; {config.base_model!r} is an "
            "adapter folder"
        )
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    compute_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
    base = AutoModelForCausalLM.from_pretrained(
        path,
        quantization_config=quantization,
        device_map={"": device.index or 0},
        attn_implementation=attention_for(_causal_lm_class(path), config.attn_implementation),
    )
    # Casts norms to fp32 and makes the inputs require grad (needed by checkpointing).
    base = prepare_model_for_kbit_training(
        base, use_gradient_checkpointing=config.gradient_checkpointing
    )
    return base, AutoTokenizer.from_pretrained(path)


def base_on_meta(config: TrainConfig) -> tuple[Any, Any] | None:
    """``(base on the meta device, tokenizer)``: the architecture without its weights, for a
    sharded run's processes but rank 0 (which broadcasts them); None when ``base_model`` is an
    adapter folder (merged into its base, so only a real load knows its result)."""
    path = resolve_model(config.base_model)
    if config.quantize_4bit or is_adapter_dir(path):
        return None
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    with torch.device("meta"):
        model: Any = AutoModelForCausalLM.from_config(
            AutoConfig.from_pretrained(path), dtype=torch.float32
        )
    model.set_attn_implementation(attention_for(type(model), config.attn_implementation))
    model.eval()  # as load_model_dir leaves a loaded model
    return model, AutoTokenizer.from_pretrained(path)


def attention_for(model_class: Any, requested: str) -> str:
    """``requested``, or eager for an architecture without an sdpa kernel (Gemma 2: sdpa
    cannot soft-cap the attention logits, and transformers refuses it)."""
    if requested == "sdpa" and not getattr(model_class, "_supports_sdpa", True):
        return "eager"
    return requested


def _causal_lm_class(path: Any) -> Any:
    """The transformers class ``AutoModelForCausalLM`` would build for ``path`` (or None)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        return AutoModelForCausalLM._model_mapping[type(AutoConfig.from_pretrained(path))]
    except (KeyError, ValueError, OSError):
        return None


def trainable_model(base: Any, config: TrainConfig, log: Log) -> tuple[Any, dict[str, Any] | None]:
    """The model to optimize and, when an adapter is continued, what was loaded."""
    if config.finetune_method == "full":
        for parameter in base.parameters():
            parameter.requires_grad_(True)
        return base, None
    if config.init_adapter:
        folder = fetch_adapter(config.init_adapter)
        model = continued_adapter(base, folder, config, log)
        log(f"train: continuing adapter {config.init_adapter}")
        if any(p.is_meta for p in model.parameters()):  # rank 0 broadcasts (and reports) it
            return model, {"source": config.init_adapter}
        return model, {"source": config.init_adapter, "adapter_sha256": live_adapter_digest(model)}
    return new_adapter(base, config), None


def is_peft_model(model: Any) -> bool:
    return callable(getattr(model, "get_base_model", None))


def underlying_model(model: Any) -> Any:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if is_peft_model(model) else model
