"""Load a model folder for evaluation, serving or further training.

A folder is either a plain Hugging Face causal LM (``config.json`` + weights) or a TuneLoop
adapter folder: ``tuneloop_model.json`` (``{"base_model": <ref>, "adapter": true}``) beside a
peft LoRA adapter and the tokenizer, which is what ``train.py`` writes to ``SM_MODEL_DIR``.
The adapter's base is resolved through the catalog, so the same folder loads on AWS and
locally.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from tuneloop.models.catalog import resolve_model

METADATA_FILE = "tuneloop_model.json"
# An adapter's base may itself be an adapter folder (training from a champion); bound the
# chain so a folder that names itself cannot recurse forever.
_MAX_ADAPTER_DEPTH = 4


def read_model_metadata(path: Path) -> dict[str, Any]:
    """The folder's ``tuneloop_model.json`` as a dict, or ``{}`` when it has none."""
    meta_path = Path(path) / METADATA_FILE
    if not meta_path.is_file():
        return {}
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable model metadata {meta_path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"model metadata {meta_path} must be a JSON object")
    return data


def write_model_metadata(path: Path, base_model: str, **extra: Any) -> Path:
    """Write ``tuneloop_model.json`` marking ``path`` as an adapter over ``base_model``."""
    meta_path = Path(path) / METADATA_FILE
    payload = {"base_model": base_model, "adapter": True, **extra}
    meta_path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta_path


def root_base_dir(path: Path) -> Path:
    """The plain model folder at the root of ``path``'s adapter chain (``path`` itself when
    it is no adapter): what a first fine-tune is compared with."""
    current = Path(path)
    for _ in range(_MAX_ADAPTER_DEPTH + 1):
        if not is_adapter_dir(current):
            return current
        base_ref = read_model_metadata(current).get("base_model")
        if not isinstance(base_ref, str) or not base_ref:
            raise ValueError(f"{current / METADATA_FILE} has no base_model")
        current = resolve_model(base_ref)
    raise ValueError(f"adapter chain deeper than {_MAX_ADAPTER_DEPTH} at {str(path)!r}")


def is_adapter_dir(path: Path) -> bool:
    """True when ``path`` holds a TuneLoop adapter (metadata says ``adapter: true``)."""
    return bool(read_model_metadata(path).get("adapter"))


def load_model_dir(
    path: Path, *, merge: bool = True, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, Any]:
    """Load ``(model, tokenizer)`` from a plain HF folder or a TuneLoop adapter folder.

    With ``merge`` the LoRA weights are folded into the base (faster inference, a plain
    ``PreTrainedModel``); without it the peft wrapper is returned. The model is in eval mode.
    """
    return _load(Path(path), merge=merge, dtype=dtype, depth=0)


def _load(path: Path, *, merge: bool, dtype: torch.dtype, depth: int) -> tuple[Any, Any]:
    if not path.is_dir():
        raise ValueError(f"model folder {str(path)!r} does not exist")
    meta = read_model_metadata(path)
    if not meta.get("adapter"):
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{str(path)!r} is neither a Hugging Face model folder (no config.json) "
                f"nor a TuneLoop adapter folder (no {METADATA_FILE} with adapter: true)"
            )
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model.eval()
        return model, tokenizer

    if depth >= _MAX_ADAPTER_DEPTH:
        raise ValueError(f"adapter chain deeper than {_MAX_ADAPTER_DEPTH} at {str(path)!r}")
    base_ref = meta.get("base_model")
    if not isinstance(base_ref, str) or not base_ref:
        raise ValueError(f"{path / METADATA_FILE} has no base_model")
    # Imported here: peft is only needed for adapter folders.
    from peft import PeftModel

    # A base that is itself an adapter is merged so the new adapter applies on top.
    base, base_tokenizer = _load(resolve_model(base_ref), merge=True, dtype=dtype, depth=depth + 1)
    adapted: Any = PeftModel.from_pretrained(base, path)
    if merge:
        adapted = adapted.merge_and_unload()
    tokenizer = _adapter_tokenizer(path) or base_tokenizer
    adapted.eval()
    return adapted, tokenizer


def _adapter_tokenizer(path: Path) -> Any | None:
    """The tokenizer saved beside the adapter (it carries the chat template used to train)."""
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        return None
    return AutoTokenizer.from_pretrained(path)
