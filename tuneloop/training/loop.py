"""The LoRA training loop: plain PyTorch (AdamW over the LoRA parameters, linear schedule,
gradient accumulation), which on CPU is faster and easier to reason about than HF Trainer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

from tuneloop.models.catalog import resolve_model
from tuneloop.models.loading import load_model_dir
from tuneloop.training.config import TrainConfig, TrainingError
from tuneloop.training.data import IGNORE_INDEX, Dataset, collate, encode_dataset, index_stream

CHECKPOINT_FILE = "tuneloop_checkpoint.pt"
Log = Callable[[str], None]
# Below this size a step is a few ms of tiny matmuls; extra threads only add sync overhead.
_SMALL_MODEL_PARAMETERS = 5_000_000


@dataclass
class TrainResult:
    model: Any  # the peft model (LoRA adapter over the base)
    tokenizer: Any
    report: dict[str, Any] = field(default_factory=dict)


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def auto_threads(parameters: int) -> int:
    """Threads for a model this size: tiny models lose more to thread sync than they gain."""
    return 1 if parameters < _SMALL_MODEL_PARAMETERS else available_cpus()


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = plain fp32). LoRA weights and optimizer state stay fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    # bf16 matmuls are ~2x faster than fp32 only with AVX512-BF16 or AMX; elsewhere slower.
    fast = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if fast else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def train(config: TrainConfig, dataset: Dataset, log: Log = print) -> TrainResult:
    """Fine-tune a LoRA adapter on ``dataset``; returns the peft model and a report."""
    started = time.monotonic()
    seed_everything(config.seed)
    base: Any
    base, tokenizer = load_model_dir(resolve_model(config.base_model), merge=True)
    threads = config.num_threads or auto_threads(sum(p.numel() for p in base.parameters()))
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast_dtype = resolve_precision(config.precision, device)
    base.to(device)
    log(
        f"train: device {device}, {threads} thread(s), "
        f"{'bf16 autocast' if autocast_dtype else 'fp32'}"
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    examples, dropped = encode_dataset(dataset.records, tokenizer, config.max_seq_length)
    if not examples:
        raise TrainingError(
            f"none of the {len(dataset.records)} records has a token to learn from "
            "(chat records need an assistant turn within max_seq_length)"
        )
    if dropped:
        log(f"skipped {dropped} record(s) with nothing to learn within max_seq_length")

    model = _with_lora(base, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(config))
    head = _split_head(model)

    state = _State()
    checkpoint = Path(config.checkpoint_dir) / CHECKPOINT_FILE
    fingerprint = _fingerprint(config, dataset.sha256)
    if config.checkpoint_steps and checkpoint.is_file():
        state = _resume(checkpoint, fingerprint, model, optimizer, scheduler, log)

    micro_batches = config.max_steps * config.gradient_accumulation_steps
    stream = index_stream(len(examples), config.seed)
    # Data order depends only on (seed, position), so a resumed run sees the same batches.
    skip = state.step * config.gradient_accumulation_steps * config.per_device_batch_size
    for _ in islice(stream, skip):
        pass

    model.train()
    loop_started = time.monotonic()
    for step in range(state.step, config.max_steps):
        batches = [
            collate([examples[i] for i in islice(stream, config.per_device_batch_size)], pad_id)
            for _ in range(config.gradient_accumulation_steps)
        ]
        # Normalize by the step's label count so accumulation equals one big batch.
        label_count = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
        step_loss = 0.0
        for batch in batches:
            batch = {name: tensor.to(device) for name, tensor in batch.items()}
            with torch.autocast(
                device.type,
                dtype=autocast_dtype or torch.float32,
                enabled=autocast_dtype is not None,
            ):
                loss_sum = _loss_sum(model, head, batch)
            (loss_sum / label_count).backward()
            step_loss += float(loss_sum.detach())
            state.tokens += int(batch["attention_mask"].sum())
        state.label_tokens += label_count
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        loss = step_loss / label_count
        state.losses.append(loss)
        state.step = step + 1
        log(
            f"step {state.step}/{config.max_steps} loss={loss:.4f} "
            f"lr={scheduler.get_last_lr()[0]:.3g}"
        )
        log(f"train_loss={loss:.6f};")  # SageMaker metric definition regex target
        if config.checkpoint_steps and state.step % config.checkpoint_steps == 0:
            _save_checkpoint(checkpoint, fingerprint, model, optimizer, scheduler, state)

    train_seconds = time.monotonic() - loop_started
    model.eval()
    trained_tokens = state.tokens - state.resumed_tokens
    report = {
        "losses": state.losses,
        "final_loss": state.losses[-1] if state.losses else None,
        "steps": state.step,
        "resumed_from_step": state.resumed_step,
        "micro_batches": micro_batches,
        "tokens": state.tokens,
        "label_tokens": state.label_tokens,
        "tokens_per_second": trained_tokens / train_seconds if train_seconds > 0 else None,
        "train_seconds": train_seconds,
        "wall_seconds": time.monotonic() - started,
        "num_threads": threads,
        "device": str(device),
        "precision": "bf16" if autocast_dtype else "fp32",
        "records": len(dataset.records),
        "examples": len(examples),
        "dropped_records": dropped,
        "trainable_parameters": sum(p.numel() for p in params),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "data_sha256": dataset.sha256,
        "data_files": dataset.files,
        "config": dataclasses.asdict(config),
    }
    return TrainResult(model=model, tokenizer=tokenizer, report=report)


def _with_lora(base: Any, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    base.config.use_cache = False  # no KV cache needed (or wanted) while training
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules(),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(base, lora)
    except ValueError as exc:
        raise TrainingError(f"cannot apply LoRA to {config.base_model!r}: {exc}") from exc


def _linear_schedule(config: TrainConfig) -> Callable[[int], float]:
    warmup, total = config.warmup_steps, config.max_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _split_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder, output head) of the base model, or None to use the model's full forward.

    Applying the head only where a label exists skips most of the vocabulary projection
    (the most expensive layer of a small model) on prompt tokens and padding.
    """
    base = model.get_base_model()
    get_decoder = getattr(base, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    head = base.get_output_embeddings()
    if decoder is None or head is None or getattr(base.config, "final_logit_softcapping", None):
        return None
    return decoder, head


def _loss_sum(model: Any, head: tuple[Any, Any] | None, batch: dict[str, torch.Tensor]) -> Any:
    """Summed next-token cross-entropy over the labelled positions of one micro-batch."""
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    if head is None:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return F.cross_entropy(logits[:, :-1][keep].float(), labels[keep], reduction="sum")
    decoder, output = head
    hidden = decoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    logits = output(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), labels[keep], reduction="sum")


@dataclass
class _State:
    step: int = 0
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    label_tokens: int = 0
    resumed_step: int = 0
    resumed_tokens: int = 0


def _fingerprint(config: TrainConfig, data_sha256: str) -> str:
    """Identifies a run: a checkpoint from another config or data set is not resumed."""
    settings = dataclasses.asdict(config)
    for name in ("checkpoint_dir", "checkpoint_steps", "num_threads", "model_version"):
        settings.pop(name)
    payload = json.dumps({"config": settings, "data": data_sha256}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _save_checkpoint(
    path: Path, fingerprint: str, model: Any, optimizer: Any, scheduler: Any, state: _State
) -> None:
    from peft import get_peft_model_state_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "fingerprint": fingerprint,
            "adapter": get_peft_model_state_dict(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "state": dataclasses.asdict(state),
        },
        tmp,
    )
    tmp.replace(path)  # atomic: a spot interruption never leaves half a checkpoint


def _resume(
    path: Path, fingerprint: str, model: Any, optimizer: Any, scheduler: Any, log: Log
) -> _State:
    from peft import set_peft_model_state_dict

    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("fingerprint") != fingerprint:
        log(f"ignoring checkpoint {path}: it belongs to another config or data set")
        return _State()
    set_peft_model_state_dict(model, saved["adapter"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    state = _State(**saved["state"])
    state.resumed_step, state.resumed_tokens = state.step, state.tokens
    log(f"resumed from checkpoint {path} at step {state.step}")
    return state
