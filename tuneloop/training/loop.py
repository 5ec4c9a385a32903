"""The LoRA training loop: plain PyTorch (AdamW over the LoRA parameters, linear schedule,
gradient accumulation), which on CPU is faster and easier to reason about than HF Trainer.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

from tuneloop.models.catalog import resolve_model
from tuneloop.models.loading import load_model_dir
from tuneloop.training.adapters import (
    continued_adapter,
    fetch_adapter,
    live_adapter_digest,
    new_adapter,
)
from tuneloop.training.batching import micro_batches, step_plan
from tuneloop.training.checkpoint import (
    CHECKPOINT_FILE,
    TrainState,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from tuneloop.training.config import TrainConfig, TrainingError
from tuneloop.training.data import IGNORE_INDEX, Dataset, encode_dataset
from tuneloop.training.report_outputs import peak_rss_mb

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
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrainingInterruptedError(TrainingError):
    """The run stopped early (SIGTERM or ``stop_after_steps``) after saving a checkpoint."""


def train(config: TrainConfig, dataset: Dataset, log: Log = print) -> TrainResult:
    """Fine-tune a LoRA adapter on ``dataset``; returns the peft model and a report."""
    started = time.monotonic()
    seed_everything(config.seed)
    base: Any
    base, tokenizer = load_model_dir(resolve_model(config.base_model), merge=True)
    base.set_attn_implementation(config.attn_implementation)
    threads = config.num_threads or auto_threads(sum(p.numel() for p in base.parameters()))
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast_dtype = resolve_precision(config.precision, device)
    base.to(device)
    log(
        f"train: device {device}, {threads} thread(s), "
        f"{'bf16 autocast' if autocast_dtype else 'fp32'}, {config.attn_implementation} "
        f"attention, packing {'on' if config.packing else 'off'}, "
        f"gradient checkpointing {'on' if config.gradient_checkpointing else 'off'}"
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

    base.config.use_cache = False  # no KV cache needed (or wanted) while training
    init_info: dict[str, Any] | None = None
    if config.init_adapter:
        folder = fetch_adapter(config.init_adapter)
        model = continued_adapter(base, folder, config, log)
        init_info = {"source": config.init_adapter, "adapter_sha256": live_adapter_digest(model)}
        log(f"train: continuing adapter {config.init_adapter}")
    else:
        model = new_adapter(base, config)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(config))
    head = _split_head(model)

    checkpoint = Path(config.checkpoint_dir) / CHECKPOINT_FILE
    run_id = fingerprint(config, dataset.manifest_sha256())
    state = load_checkpoint(checkpoint, run_id, model, optimizer, scheduler)
    if state is None:
        state = TrainState()
    else:
        log(f"resumed from checkpoint {checkpoint} at step {state.step}")

    examples_per_step = config.per_device_batch_size * config.gradient_accumulation_steps
    plan = step_plan(
        [len(e.input_ids) for e in examples],
        examples_per_step,
        config.seed,
        group_by_length=config.group_by_length,
    )
    # The plan depends only on (seed, step): skipping the steps done restores the position.
    for _ in islice(plan, state.step):
        pass
    if state.examples_seen != state.step * examples_per_step:
        raise TrainingError(f"checkpoint {checkpoint} has an inconsistent data position")

    model.train()
    loop_started = time.monotonic()
    stop = threading.Event()
    with _stop_on_sigterm(stop):
        for step in range(state.step, config.max_steps):
            batches = micro_batches(
                [examples[i] for i in next(plan)],
                per_device_batch_size=config.per_device_batch_size,
                accumulation_steps=config.gradient_accumulation_steps,
                pad_id=pad_id,
                packing=config.packing,
                max_length=config.max_seq_length,
            )
            # Normalize by the step's label count so accumulation equals one big batch.
            label_count = sum(batch.label_count for batch in batches)
            step_loss = 0.0
            for batch in batches:
                tensors = {name: tensor.to(device) for name, tensor in batch.tensors.items()}
                with torch.autocast(
                    device.type,
                    dtype=autocast_dtype or torch.float32,
                    enabled=autocast_dtype is not None,
                ):
                    loss_sum = _loss_sum(model, head, tensors)
                (loss_sum / label_count).backward()
                step_loss += float(loss_sum.detach())
                state.tokens += batch.tokens
                state.positions += int(tensors["input_ids"].numel())
            state.label_tokens += label_count
            state.examples_seen += examples_per_step
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
            ran = state.step - state.resumed_step
            interrupted = stop.is_set() or (
                config.stop_after_steps and ran >= config.stop_after_steps
            )
            if interrupted and state.step < config.max_steps:
                save_checkpoint(checkpoint, run_id, model, optimizer, scheduler, state)
                raise TrainingInterruptedError(
                    f"stopped after step {state.step} of {config.max_steps}; "
                    f"resumable checkpoint in {checkpoint}"
                )
            if config.checkpoint_steps and state.step % config.checkpoint_steps == 0:
                save_checkpoint(checkpoint, run_id, model, optimizer, scheduler, state)

    train_seconds = time.monotonic() - loop_started
    model.eval()
    trained_tokens = state.tokens - state.resumed_tokens
    report = {
        "losses": state.losses,
        "final_loss": state.losses[-1] if state.losses else None,
        "steps": state.step,
        "resumed_from_step": state.resumed_step,
        "micro_batches": config.max_steps * config.gradient_accumulation_steps,
        "examples_seen": state.examples_seen,
        "tokens": state.tokens,
        "tokens_seen": state.tokens,
        "label_tokens": state.label_tokens,
        "padding_fraction": 1 - state.tokens / state.positions if state.positions else 0.0,
        "tokens_per_second": trained_tokens / train_seconds if train_seconds > 0 else None,
        "train_seconds": train_seconds,
        "wall_seconds": time.monotonic() - started,
        "peak_rss_mb": peak_rss_mb(),
        "num_threads": threads,
        "device": str(device),
        "precision": "bf16" if autocast_dtype else "fp32",
        "attention": config.attn_implementation,
        "records": len(dataset.records),
        "examples": len(examples),
        "dropped_records": dropped,
        "trainable_parameters": sum(p.numel() for p in params),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "init_adapter": init_info,
        "adapter_sha256": live_adapter_digest(model),
        "data_sha256": dataset.sha256,
        "data_files": dataset.files,
        "data_manifest": dataset.manifest,
        "data_manifest_sha256": dataset.manifest_sha256(),
        "config": dataclasses.asdict(config),
    }
    return TrainResult(model=model, tokenizer=tokenizer, report=report)


@contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (a spot interruption) sets ``stop``: the loop checkpoints after this step."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    # Packed rows carry position_ids and no attention mask: transformers then builds a
    # block-diagonal causal mask from where the positions restart (only without a KV cache).
    inputs: dict[str, Any] = {"use_cache": False}
    inputs |= {
        name: batch[name]
        for name in ("input_ids", "attention_mask", "position_ids")
        if name in batch
    }
    if head is None:
        logits = model(**inputs).logits
        return F.cross_entropy(logits[:, :-1][keep].float(), labels[keep], reduction="sum")
    decoder, output = head
    hidden = decoder(**inputs).last_hidden_state
    logits = output(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), labels[keep], reduction="sum")
