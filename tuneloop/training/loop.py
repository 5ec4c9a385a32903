"""The training loop: plain PyTorch (AdamW over the trainable parameters, linear schedule,
gradient accumulation, data parallelism), which on CPU is faster and easier to reason about
than HF Trainer.
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

from tuneloop.training import distributed, sharding
from tuneloop.training.adapters import live_adapter_digest
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
from tuneloop.training.frozen_cast import frozen_linear_weights_in
from tuneloop.training.model_setup import (
    base_on_meta,
    is_peft_model,
    load_base,
    trainable_model,
    underlying_model,
)
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
    """Fine-tune on ``dataset`` (LoRA adapter or every weight); returns the model and a report.

    Under torchrun every process calls this; only rank 0 logs (``distributed.py``).
    """
    started = time.monotonic()
    place = distributed.topology()
    distributed.start(place)
    if not place.is_main:
        log = _silent
    seed_everything(config.seed)
    device = _device(place)
    autocast_dtype = resolve_precision(config.precision, device)
    # Sharded: rank 0 loads the base on CPU, the others build it on the meta device (no
    # memory) and receive their shards from rank 0; fully_shard moves only shards to the GPU.
    shard_model = config.sharding == "fsdp" and place.distributed
    on_meta = base_on_meta(config) if shard_model else None
    from_rank0 = on_meta is not None  # the same on every process (it depends on the config)
    if on_meta is not None and not place.is_main:
        base, tokenizer = on_meta
    else:
        base, tokenizer = load_base(config, torch.device("cpu") if shard_model else device)
    threads = config.num_threads or auto_threads(sum(p.numel() for p in base.parameters()))
    torch.set_num_threads(threads)
    log(
        f"train: device {device}, {threads} thread(s), "
        f"{'bf16 autocast' if autocast_dtype else 'fp32'}, {base.config._attn_implementation} "
        f"attention, {config.finetune_method} fine-tuning"
        f"{' over a 4-bit base' if config.quantize_4bit else ''}, "
        f"packing {'on' if config.packing else 'off'}, "
        f"gradient checkpointing {'on' if config.gradient_checkpointing else 'off'}"
        + (f", {place.world_size} processes" if place.distributed else "")
        + (", sharded (FSDP2)" if shard_model else "")
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = encode_dataset(dataset, tokenizer, config.max_seq_length)
    dropped = encoded.dropped
    if not len(encoded):
        raise TrainingError(
            f"none of the {len(dataset.records)} records has a token to learn from "
            "(chat records need an assistant turn within max_seq_length)"
        )
    if dropped:
        log(f"skipped {dropped} record(s) with nothing to learn within max_seq_length")
    if encoded.from_cache:
        log(f"train: {len(encoded)} tokenized examples read from the cache of an earlier run")

    base.config.use_cache = False  # no KV cache needed (or wanted) while training
    model, init_info = trainable_model(base, config, log)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    head = _split_head(model)

    def unsharded_loss(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return _loss_sum(model, head, tensors)

    loss_of: sharding.LossSum = unsharded_loss

    replica = None
    if shard_model:  # the unsharded copy (no weights yet) that rank 0 returns
        replica = sharding.meta_replica(model) if place.is_main else None
        loss_of = sharding.shard(model, loss_of, device, place, from_rank0=from_rank0)
    named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named_params]
    optimizer = _adamw(params, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(config))

    # Micro-batches per optimizer step over all processes; the effective batch is
    # per_device_batch_size * gradient_accumulation_steps * processes examples.
    micro_steps = config.gradient_accumulation_steps * place.world_size
    examples_per_step = config.per_device_batch_size * micro_steps
    sharded = config.sharding == "fsdp"  # sharded checkpoints, even in one process
    if sharded:
        checkpoint = Path(config.checkpoint_dir) / sharding.CHECKPOINT_DIR
        run_id = fingerprint(config, dataset.manifest_sha256(), examples_per_step)
        state = sharding.load_checkpoint(checkpoint, run_id, model, optimizer, scheduler, place)
    else:
        checkpoint = Path(config.checkpoint_dir) / CHECKPOINT_FILE
        run_id = fingerprint(config, dataset.manifest_sha256())
        state = load_checkpoint(checkpoint, run_id, model, optimizer, scheduler)
    if state is None:
        state = TrainState()
    else:
        log(f"resumed from checkpoint {checkpoint} at step {state.step}")
    lengths = encoded.lengths()
    plan = step_plan(
        lengths,
        examples_per_step,
        config.seed,
        group_by_length=config.group_by_length,
    )
    # The plan depends only on (seed, step): skipping the steps done restores the position.
    for _ in islice(plan, state.step):
        pass
    if state.examples_seen != state.step * examples_per_step:
        raise TrainingError(f"checkpoint {checkpoint} has an inconsistent data position")

    def save() -> None:
        if sharded:  # every process writes its shard
            sharding.save_checkpoint(checkpoint, run_id, model, optimizer, scheduler, state, place)
        elif place.is_main:
            save_checkpoint(checkpoint, run_id, model, optimizer, scheduler, state)

    model.train()
    loop_started = time.monotonic()
    stop = threading.Event()
    # FSDP owns the sharded weights: they cannot be swapped for bf16 copies.
    frozen_dtype = autocast_dtype if config.finetune_method == "lora" and not shard_model else None
    zero_weight_passes = 0  # this process's in this run (summed at the end)
    with _stop_on_sigterm(stop), frozen_linear_weights_in(model, frozen_dtype) as cast_count:
        for step in range(state.step, config.max_steps):
            batches = micro_batches(
                encoded.examples(next(plan)),
                per_device_batch_size=config.per_device_batch_size,
                accumulation_steps=micro_steps,
                pad_id=pad_id,
                packing=config.packing,
                max_length=config.max_seq_length,
            )
            # Normalize by the step's label count so accumulation equals one big batch.
            label_count = sum(batch.label_count for batch in batches)
            loss_total = torch.zeros((), dtype=torch.float64, device=device)
            for batch, counts in sharding.rank_passes(batches, place, same_count=shard_model):
                tensors = {
                    name: tensor.to(device, non_blocking=True)
                    for name, tensor in batch.tensors.items()
                }
                with torch.autocast(
                    device.type,
                    dtype=autocast_dtype or torch.float32,
                    enabled=autocast_dtype is not None,
                ):
                    loss_sum = loss_of(tensors)
                if not counts:  # runs FSDP's collectives, adds no gradient
                    (loss_sum * 0.0).backward()
                    zero_weight_passes += 1
                    continue
                (loss_sum / label_count).backward()
                loss_total += loss_sum.detach()  # no host sync per micro-batch
            state.tokens += sum(batch.tokens for batch in batches)
            state.positions += sum(batch.positions for batch in batches)
            state.label_tokens += label_count
            state.examples_seen += examples_per_step
            step_loss = float(loss_total)
            if place.distributed:
                if not shard_model:  # FSDP has summed them in the backward passes
                    distributed.sum_gradients(params)
                (step_loss,) = distributed.sum_scalars([step_loss], device)
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm, foreach=True)
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
            stop_votes = float(stop.is_set())
            if place.distributed:  # every process stops after the same step
                (stop_votes,) = distributed.sum_scalars([stop_votes], device)
            interrupted = stop_votes > 0 or (
                config.stop_after_steps and ran >= config.stop_after_steps
            )
            if interrupted and state.step < config.max_steps:
                save()
                raise TrainingInterruptedError(
                    f"stopped after step {state.step} of {config.max_steps}; "
                    f"resumable checkpoint in {checkpoint}"
                )
            if config.checkpoint_steps and state.step % config.checkpoint_steps == 0:
                save()

    train_seconds = time.monotonic() - loop_started
    if shard_model:
        model = sharding.full_model(model, replica)
        # Rank 0 runs the most passes: its report counts the other processes' padding.
        (padding,) = distributed.sum_scalars([zero_weight_passes], device)
        zero_weight_passes = int(padding)
    model.eval()
    trained_tokens = state.tokens - state.resumed_tokens
    tokens_per_second = trained_tokens / train_seconds if train_seconds > 0 else None
    log(f"train_tokens_per_second={tokens_per_second or 0:.1f};")  # metric definition target
    report = {
        "losses": state.losses,
        "final_loss": state.losses[-1] if state.losses else None,
        "steps": state.step,
        "resumed_from_step": state.resumed_step,
        "micro_batches": config.max_steps * micro_steps,
        "examples_seen": state.examples_seen,
        "tokens": state.tokens,
        "tokens_seen": state.tokens,
        "label_tokens": state.label_tokens,
        "padding_fraction": 1 - state.tokens / state.positions if state.positions else 0.0,
        "tokens_per_second": tokens_per_second,
        "train_seconds": train_seconds,
        "wall_seconds": time.monotonic() - started,
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_memory_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
        "num_threads": threads,
        "device": str(device),
        "processes": place.world_size,
        "zero_weight_passes": zero_weight_passes,
        "precision": "bf16" if autocast_dtype else "fp32",
        "frozen_weights_in_bf16": cast_count,
        "attention": underlying_model(model).config._attn_implementation,
        "finetune_method": config.finetune_method,
        "quantize_4bit": config.quantize_4bit,
        "records": len(dataset.records),
        "examples": len(encoded),
        "tokenized_from_cache": encoded.from_cache,
        "dataset_tokens": int(lengths.sum()),  # of all examples, trained on or not
        "dropped_records": dropped,
        "trainable_parameters": sum(p.numel() for p in params),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "init_adapter": init_info,
        # Rank 0's model is the unsharded one (the others may hold shards).
        "adapter_sha256": (
            live_adapter_digest(model) if is_peft_model(model) and place.is_main else None
        ),
        "data_sha256": dataset.sha256,
        "data_files": dataset.files,
        "data_manifest": dataset.manifest,
        "data_manifest_sha256": dataset.manifest_sha256(),
        "config": dataclasses.asdict(config),
    }
    return TrainResult(model=model, tokenizer=tokenizer, report=report)


def _silent(_: str) -> None:
    pass


def _device(place: distributed.Topology) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(place.local_rank)
        return torch.device("cuda", place.local_rank)
    return torch.device("cpu")


def _adamw(params: list[Any], config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one call for all parameters instead of a Python loop over
    hundreds of LoRA tensors), where this PyTorch has it for the device."""
    fused = device.type in ("cuda", "cpu") and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(
        params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused
    )


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
    base = underlying_model(model)
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
