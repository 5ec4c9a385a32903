"""The LoRA adapter a run trains: a fresh one, or an existing one continued (``init_adapter``).

Continuing the production adapter (incremental training) keeps the adapter chain flat: the
result is still one adapter over the same base model, so serving and evaluation load it as
any other. The loaded weights are the trainable parameters themselves (peft
``is_trainable=True``), and ``adapter_digest`` lets the report prove it.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from tuneloop.models.catalog import resolve_model
from tuneloop.models.families import ALL_LINEAR, UnsupportedModelError, lora_targets
from tuneloop.models.loading import read_model_metadata
from tuneloop.training.config import TrainConfig, TrainingError

Log = Callable[[str], None]


def new_adapter(base: Any, config: TrainConfig) -> Any:
    """A fresh LoRA adapter over ``base`` on the modules ``lora_target_modules`` names
    (``auto``: those of the model's family, ``tuneloop.models.families``)."""
    from peft import LoraConfig, get_peft_model

    model_type = str(getattr(base.config, "model_type", ""))
    try:
        targets = lora_targets(model_type, config.target_modules())
    except UnsupportedModelError as exc:
        raise TrainingError(f"base model {config.base_model!r}: {exc}") from exc
    if targets.target_modules != ALL_LINEAR:
        _check_modules_exist(base, targets.target_modules, model_type, config.base_model)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=(
            targets.target_modules
            if isinstance(targets.target_modules, str)
            else list(targets.target_modules)
        ),
        fan_in_fan_out=targets.fan_in_fan_out,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(base, lora)
    except ValueError as exc:
        raise TrainingError(f"cannot apply LoRA to {config.base_model!r}: {exc}") from exc


def _check_modules_exist(base: Any, names: Sequence[str], model_type: str, ref: str) -> None:
    """Every name matches a module (peft matches a name or a dotted suffix of one); peft
    itself fails only when none does, and would train fewer modules than asked."""
    leaves = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules() if name}
    missing = [name for name in names if name.rsplit(".", 1)[-1] not in leaves]
    if missing:
        linear = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in base.named_modules()
                if name and _is_projection(module)
            }
        )
        raise TrainingError(
            f"cannot apply LoRA to {ref!r} (model type {model_type!r}): no module named "
            f"{', '.join(missing)}; its linear modules are {', '.join(linear)}"
        )


def _is_projection(module: Any) -> bool:
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def fetch_adapter(ref: str) -> Path:
    """The local adapter folder ``ref`` names (S3 URI, ``model.tar.gz`` or folder)."""
    path = Path(ref.removeprefix("file://")).expanduser()
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        folder = Path(tempfile.mkdtemp(prefix="tuneloop-init-adapter-"))
        try:
            with tarfile.open(path) as archive:
                archive.extractall(folder, filter="data")
        except (OSError, tarfile.TarError) as exc:
            raise TrainingError(f"init_adapter {ref!r}: cannot extract: {exc}") from exc
    else:
        try:
            folder = resolve_model(ref)
        except ValueError as exc:
            raise TrainingError(f"init_adapter {ref!r}: {exc}") from exc
    try:
        meta = read_model_metadata(folder)
    except ValueError as exc:
        raise TrainingError(f"init_adapter {ref!r}: {exc}") from exc
    if not meta.get("adapter") or not (folder / "adapter_config.json").is_file():
        raise TrainingError(
            f"init_adapter {ref!r} is not a TuneLoop adapter "
            "(needs tuneloop_model.json with adapter: true and adapter_config.json)"
        )
    return folder


def continued_adapter(base: Any, folder: Path, config: TrainConfig, log: Log) -> Any:
    """``base`` with the adapter in ``folder`` loaded as the trainable parameters."""
    from peft import PeftModel

    adapter_base = str(read_model_metadata(folder).get("base_model", ""))
    if not _same_model(adapter_base, config.base_model):
        raise TrainingError(
            f"init_adapter was trained over base model {adapter_base!r}, "
            f"but this run's base_model is {config.base_model!r}"
        )
    model = PeftModel.from_pretrained(base, folder, is_trainable=True)
    lora: Any = model.peft_config["default"]  # a LoraConfig
    if (lora.r, lora.lora_alpha) != (config.lora_r, config.lora_alpha):
        log(
            f"train: init_adapter has lora_r={lora.r}, lora_alpha={lora.lora_alpha}; "
            "these (not the hyperparameters) apply"
        )
    return model


def adapter_digest(weights: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the adapter's tensors by name (the same for a saved file and a live model)."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def live_adapter_digest(model: Any) -> str:
    from peft import get_peft_model_state_dict

    return adapter_digest(get_peft_model_state_dict(model))


def _same_model(first: str, second: str) -> bool:
    if first == second:
        return True
    try:
        return resolve_model(first) == resolve_model(second)
    except ValueError:
        return False
