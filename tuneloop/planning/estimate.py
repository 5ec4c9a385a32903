"""Per-GPU memory of a training run: weights, adapter, gradients, optimizer, activations, logits.

The estimate models TuneLoop's trainer (``tuneloop/training/``) as it runs, not a generic one:

- The base model is loaded in **fp32** and stays fp32; ``bf16``/``fp16`` mean autocast, so the
  fp32 weights are the mixed-precision master copy (no second one). With LoRA and autocast
  the frozen ``nn.Linear`` weights also get a copy in the compute precision for the whole run
  (``frozen_cast.py``). QLoRA holds the blocks' linear weights in NF4 with double
  quantization (4.127 bits each, QLoRA paper) and everything else in fp32
  (``prepare_model_for_kbit_training``).
- Trained parameters are fp32; AdamW keeps two fp32 moments per trained parameter (8 bytes).
- Activations are what autograd saves for the backward pass, counted tensor by tensor for a
  Llama-style block (the method of Korthikanti et al., "Reducing Activation Recomputation in
  Large Transformer Models", 2022, section 4.1, applied to RMSNorm, rotary SDPA attention
  and a SwiGLU MLP): with gradient checkpointing only each block's input is kept, plus one
  block's worth while it is recomputed.
- The output head runs on labelled positions only; the estimate assumes every position is
  labelled (the worst case) and keeps 12 bytes per logit (the saved fp32 log-probabilities,
  and at the start of the backward pass their gradient and the logits' gradient).
- The peak is what lives for the whole step, plus the fullest of three moments: the start of
  the backward pass (activations, logits, autocast's weight copies), a checkpointed block
  being recomputed (block inputs, that block, the gradients so far) and the end of the
  backward pass (every gradient; ``zero_grad(set_to_none=True)`` frees them before the next
  forward pass). With gradient accumulation the gradients live through the next micro-batch
  too, so they count for the whole step.

``benchmarks/capacity_estimate.py`` checks the estimate against measured peaks on CPU;
docs/training.md ("Capacity planning") has the formula, the figures and what is not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tuneloop.models.families import ALL_LINEAR, UnsupportedModelError, lora_targets
from tuneloop.planning.shapes import ModelShape, Projection

GIB = 2**30
METHODS = ("lora", "qlora", "full")
PRECISIONS = ("bf16", "fp16", "fp32")
SHARDINGS = ("none", "fsdp")
ATTENTIONS = ("sdpa", "eager")
PHASES = ("forward", "recompute", "backward")

FP32 = 4
ADAMW_STATE_BYTES = 2 * FP32
"""AdamW's first and second moments, fp32, per trained parameter."""
LOGIT_BYTES = 12
"""Per logit at the start of the backward pass: fp32 log-probabilities (saved by
log_softmax), their gradient and the gradient of the logits (4 bytes each)."""
NF4_BYTES = (4 + 8 / 64 + 32 / (64 * 256)) / 8
"""QLoRA's NF4 with double quantization: 4-bit codes, an 8-bit scale per 64 weights and an
fp32 scale per 256 of those (Dettmers et al. 2023, section 3: 0.127 bits per parameter)."""
MASK_BYTES = 1
"""Dropout keeps a one-byte mask per element."""
DEFAULT_OVERHEAD_BYTES = 1 * GIB
"""Per GPU, not from the model: the CUDA context, cuBLAS/cuDNN workspaces, NCCL buffers and
the caching allocator's fragmentation. Not measured on CPU (docs/training.md)."""
ALL_REDUCE_BUCKET_ELEMENTS = 25_000_000
"""``tuneloop/training/distributed.py`` sums gradients in flattened buckets of this size."""


def count(value: float) -> str:
    """``134.5M``, ``8.03B``: a parameter count for people."""
    for size, unit, digits in ((1e9, "B", 2), (1e6, "M", 1), (1e3, "K", 1)):
        if value >= size:
            return f"{value / size:.{digits}f}{unit}"
    return str(int(value))


class PlanError(ValueError):
    """The training setup cannot be planned; the message names the setting."""


@dataclass(frozen=True, kw_only=True)
class TrainingSetup:
    """What a run does, in the trainer's terms (``TrainConfig`` hyperparameters)."""

    method: str = "lora"
    precision: str = "bf16"
    max_seq_length: int = 256
    batch_size: int = 4
    """Rows per micro-batch on each GPU (``per_device_batch_size``)."""
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    lora_r: int = 8
    lora_dropout: float = 0.0
    lora_target_modules: str = "auto"
    gpus: int = 1
    """GPUs of one instance: one training process each."""
    instances: int = 1
    """Instances of the job (``training_instance_count``), each with ``gpus`` GPUs."""
    sharding: str = "none"
    packing: bool = True
    attention: str = "sdpa"

    def problems(self) -> list[str]:
        found = []
        for name, allowed in (
            ("method", METHODS),
            ("precision", PRECISIONS),
            ("sharding", SHARDINGS),
            ("attention", ATTENTIONS),
        ):
            if getattr(self, name) not in allowed:
                found.append(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        for name in (
            "max_seq_length",
            "batch_size",
            "gradient_accumulation_steps",
            "gpus",
            "instances",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                found.append(f"{name} must be >= 1, got {value!r}")
        if self.method != "full" and (not isinstance(self.lora_r, int) or self.lora_r < 1):
            found.append(f"lora_r must be >= 1, got {self.lora_r!r}")
        if not 0 <= self.lora_dropout < 1:
            found.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.method == "qlora" and self.precision == "fp32":
            found.append("qlora computes in bf16 or fp16 (bitsandbytes' 4-bit kernels), not fp32")
        return found

    @property
    def compute_bytes(self) -> int:
        return FP32 if self.precision == "fp32" else 2

    @property
    def autocast(self) -> bool:
        return self.precision != "fp32"

    @property
    def tokens(self) -> int:
        """Token positions per micro-batch (packed rows are full)."""
        return self.batch_size * self.max_seq_length

    @property
    def processes(self) -> int:
        """The job's training processes, on every instance (torchrun's world size)."""
        return self.gpus * self.instances

    @property
    def shards(self) -> int:
        """FSDP shards over every process of the job, across instances."""
        return self.processes if self.sharding == "fsdp" else 1


@dataclass(frozen=True)
class Component:
    name: str
    bytes: int
    lives: tuple[str, ...]
    """When it is held: ``run`` (the whole step), or one or more of the step's phases:
    ``forward`` (the end of the forward pass, where the backward pass starts), ``recompute``
    (a checkpointed block recomputed in the backward pass) and ``backward`` (its end,
    where all gradients exist)."""
    detail: str


@dataclass(frozen=True)
class MemoryEstimate:
    components: tuple[Component, ...]
    trainable_parameters: int
    total_parameters: int
    host_bytes: int
    """Host memory of one instance while its processes load the model (fp32: one copy per
    GPU process, or one in all under FSDP)."""
    notes: tuple[str, ...] = field(default=())

    def part(self, name: str) -> int:
        return sum(c.bytes for c in self.components if c.name == name)

    def phase(self, lives: str) -> int:
        return sum(c.bytes for c in self.components if lives in c.lives)

    @property
    def peak_phase(self) -> str:
        return max(PHASES, key=self.phase)

    @property
    def peak_bytes(self) -> int:
        """Per GPU: what lives all step, plus the fullest phase."""
        return self.phase("run") + self.phase(self.peak_phase)


@dataclass(frozen=True)
class Plan:
    """A base model and what the run does with it."""

    shape: ModelShape
    setup: TrainingSetup

    def with_setup(self, **changes: object) -> Plan:
        return Plan(self.shape, replace(self.setup, **changes))  # type: ignore[arg-type]

    def estimate(self, *, overhead_bytes: int = DEFAULT_OVERHEAD_BYTES) -> MemoryEstimate:
        return estimate(self.shape, self.setup, overhead_bytes=overhead_bytes)


def adapted_projections(shape: ModelShape, setup: TrainingSetup) -> tuple[Projection, ...]:
    """The block projections a LoRA adapter covers (none for full fine-tuning)."""
    if setup.method == "full":
        return ()
    requested: str | list[str] = setup.lora_target_modules
    if requested not in ("auto", ALL_LINEAR):
        requested = [name.strip() for name in setup.lora_target_modules.split(",") if name.strip()]
    try:
        targets = lora_targets(shape.model_type, requested).target_modules
    except UnsupportedModelError as exc:
        raise PlanError(str(exc)) from exc
    projections = shape.projections()
    if targets == ALL_LINEAR:
        return projections
    leaves = {name.rsplit(".", 1)[-1] for name in targets}
    chosen = tuple(p for p in projections if p.name in leaves)
    if not chosen:
        names = ", ".join(sorted({p.name for p in projections}))
        raise PlanError(f"lora_target_modules {setup.lora_target_modules!r} match none of {names}")
    return chosen


def estimate(
    shape: ModelShape, setup: TrainingSetup, *, overhead_bytes: int = DEFAULT_OVERHEAD_BYTES
) -> MemoryEstimate:
    """The per-GPU memory of one training step of ``setup`` on ``shape``."""
    problems = setup.problems()
    if problems:
        raise PlanError("; ".join(problems))
    c = setup.compute_bytes
    adapted = adapted_projections(shape, setup)
    adapter = shape.num_layers * sum(
        setup.lora_r * (p.in_features + p.out_features) for p in adapted
    )
    total_params = shape.parameters + adapter
    trainable = shape.parameters if setup.method == "full" else adapter
    shards = setup.shards
    sharded = shards > 1
    head = shape.vocab_size * shape.hidden_size  # the output head's weight (tied or not)
    # FSDP's units (training/sharding.py): one per block, and a root unit with the rest
    # (embeddings, final norm, an untied head).
    root = shape.parameters - shape.num_layers * shape.layer_parameters

    parts: list[Component] = []

    def add(name: str, value: float, lives: str, detail: str) -> None:
        if value:
            parts.append(Component(name, math.ceil(value), tuple(lives.split("+")), detail))

    if setup.method == "qlora":
        other = shape.parameters - shape.linear_parameters
        add(
            "weights",
            (shape.linear_parameters * NF4_BYTES + other * FP32) / shards,
            "run",
            f"{count(shape.linear_parameters)} block weights in NF4 "
            f"({NF4_BYTES:.3f} B each), {count(other)} others in fp32",
        )
    else:
        add(
            "weights",
            shape.parameters * FP32 / shards,
            "run",
            f"{count(shape.parameters)} parameters in fp32",
        )
    if setup.method == "lora" and setup.autocast and not sharded:  # FSDP owns the weights
        add(
            "frozen weight copies",
            shape.linear_parameters * c / shards,
            "run",
            f"the frozen block linears held in {setup.precision} while training",
        )
    if adapter:
        add(
            "adapter",
            adapter * FP32 / shards,
            "run",
            f"{count(adapter)} LoRA parameters (rank {setup.lora_r}) in fp32",
        )
    add(
        "optimizer state",
        trainable * ADAMW_STATE_BYTES / shards,
        "run",
        "AdamW: two fp32 moments per trained parameter (the fp32 weights are the master copy)",
    )
    if overhead_bytes:
        add(
            "overhead",
            overhead_bytes,
            "run",
            "CUDA context, cuBLAS workspace, NCCL, allocator fragmentation",
        )

    # autocast caches its casts of trained weights until the forward pass ends, and the head's
    # (and, without checkpointing, every block's) stay saved for the backward pass; with
    # checkpointing a recomputed block casts its weights again. Under FSDP the casts are of
    # the all-gathered weights, so they are full size: not divided by the shards.
    recompute_casts = 0.0
    if setup.autocast:
        trained = shape.linear_parameters if setup.method == "full" else adapter
        cast, what = (
            head + trained,
            "the output head and "
            + ("every trained linear" if setup.method == "full" else "the adapter"),
        )
        if setup.method == "qlora":
            cast += max(p.parameters for p in shape.projections())
            what += ", one dequantized 4-bit weight"
        add(
            "autocast weight copies",
            cast * c,
            "forward" if setup.gradient_checkpointing else "forward+recompute",
            f"{what} cast to {setup.precision} in the forward pass",
        )
        if setup.gradient_checkpointing:
            recompute_casts = c * (head + trained / shape.num_layers)
        if setup.method == "lora" and sharded:
            # No bf16 copies of sharded frozen weights: every frozen linear casts its weight
            # per call, and autograd saves that cast for the input's gradient.
            if setup.gradient_checkpointing:
                recompute_casts += c * shape.layer_linear_parameters
            else:
                add(
                    "frozen weight casts",
                    c * shape.linear_parameters,
                    "forward",
                    f"the frozen block linears cast to {setup.precision}, saved for the "
                    "backward pass",
                )
    tokens = f"{setup.batch_size} x {setup.max_seq_length} tokens"
    block = block_bytes_per_token(shape, setup, adapted) * setup.tokens
    kept = saved_activation_bytes(shape, setup, block)
    if setup.gradient_checkpointing:
        add(
            "activations",
            kept,
            "forward+recompute",
            f"gradient checkpointing: each block's input, {tokens}",
        )
        add(
            "recomputed block",
            block + 2 * FP32 * shape.hidden_size * setup.tokens + recompute_casts,
            "recompute",
            "the block recomputed in the backward pass, its gradients in and out"
            + (", its and the head's weight casts" if recompute_casts else ""),
        )
    else:
        add("activations", kept, "forward", f"every block's saved tensors, {tokens}")
    logits = setup.tokens * shape.vocab_size
    head_gradient = head * FP32 if setup.method == "full" else 0
    add(
        "logits",
        max(LOGIT_BYTES * logits, 4 * logits + head_gradient),
        "forward",
        f"{setup.tokens} positions x {shape.vocab_size} vocabulary x {LOGIT_BYTES} B",
    )
    # The first blocks are recomputed when (nearly) every other gradient exists.
    grads_live = "backward+recompute" if setup.gradient_checkpointing else "backward"
    if setup.gradient_accumulation_steps > 1:
        grads_live = "run"
    # FSDP: the root unit's gradients are sharded by its reduce-scatter, after the end of the
    # backward pass modelled here (unsharded until then, below), unless they accumulate.
    root_trained = root if setup.method == "full" and sharded and grads_live != "run" else 0
    add(
        "gradients",
        (trainable - root_trained) * FP32 / shards,
        grads_live,
        "fp32, one per trained parameter"
        + (" (kept across accumulated micro-batches)" if grads_live == "run" else "")
        + (", the root unit's below" if root_trained else ""),
    )
    if sharded:
        _add_fsdp_units(add, shape, setup, adapter, root)
    elif setup.method == "full" and shape.tie_word_embeddings:
        # The tied embedding gets two gradients, the head's first and the embedding's last.
        # Under autocast the head's arrives through a cast (a tensor of its own) and the second
        # is added in place; in fp32 the sum is a new tensor, so both live beside it a moment.
        copies = 1 if setup.autocast else 2
        add(
            "tied embedding gradient",
            copies * head * FP32 / shards,
            "backward",
            "the embedding's own gradient"
            + ("" if setup.autocast else " and its sum")
            + " at the end of the backward pass",
        )
    if setup.processes > 1 and setup.sharding == "none":
        bucket = min(trainable, ALL_REDUCE_BUCKET_ELEMENTS)
        add(
            "all-reduce buffers",
            2 * bucket * FP32,
            "backward",
            "a flattened gradient bucket and its copy back",
        )

    notes = []
    if setup.method == "qlora":
        notes.append("QLoRA is modelled from bitsandbytes' documented layout, not measured")
    if sharded:
        notes.append(
            f"FSDP over {shards} processes: measured on CPU (2 gloo processes), not on GPUs"
        )
    host_params = shape.linear_parameters * NF4_BYTES if setup.method == "qlora" else 0
    # Per instance: each of its processes loads the whole model, except under FSDP, where
    # rank 0 alone loads it and the others start on the meta device (training/sharding.py).
    host = (1 if sharded else setup.gpus) * (host_params or shape.parameters * FP32)
    return MemoryEstimate(
        components=tuple(parts),
        trainable_parameters=trainable,
        total_parameters=total_params,
        host_bytes=math.ceil(host),
        notes=tuple(notes),
    )


def _add_fsdp_units(
    add: Callable[[str, float, str, str], None],
    shape: ModelShape,
    setup: TrainingSetup,
    adapter: int,
    root: int,
) -> None:
    """What FSDP2 holds beyond the shards (measured: ``capacity_estimate.py --sharding fsdp``).

    The root unit is not resharded after the forward pass (its weights are needed at once
    for the backward); in the backward pass a block runs while the next one is prefetched,
    and the last unit's flattened gradients wait for the next unit's reduce-scatter.
    """
    head = shape.vocab_size * shape.hidden_size
    full = setup.method == "full"
    add(
        "gathered root unit",
        root * FP32,
        "forward+recompute+backward",
        "FSDP: embeddings, final norm and head all-gathered from the start of the forward "
        "pass to the end of the backward pass",
    )
    block_trained = shape.layer_parameters if full else adapter / shape.num_layers
    add(
        "reduce-scatter buffer",
        block_trained * FP32,
        "recompute+backward",
        "FSDP: one unit's flattened gradients, held until the next unit's reduce-scatter",
    )
    root_last = 0.0
    if full:
        add(
            "unsharded head gradient",
            head * FP32,
            "recompute+backward",
            "FSDP: the head's gradient, full size from its backward to the root unit's "
            "reduce-scatter",
        )
        # Then the embedding's (and final norm's) at the end; a tied embedding's arrives as a
        # second gradient, summed into a new tensor in fp32 (as unsharded).
        tied = (1 if setup.autocast else 2) * head if shape.tie_word_embeddings else 0
        root_last = (root - head + tied) * FP32
    blocks = 2 * shape.layer_parameters * FP32
    # Two blocks are gathered until the first block's backward, the root unit's last
    # gradients exist after it: the end of the backward pass holds the larger.
    add(
        "gathered blocks",
        blocks,
        "recompute+backward" if blocks > root_last else "recompute",
        "FSDP: the block in its backward pass (or recomputed) and the next one, prefetched",
    )
    if root_last >= blocks:
        add(
            "root unit gradients",
            root_last,
            "backward",
            "FSDP: the embedding's and final norm's gradients, full size, at the end of the "
            "backward pass" + (" (a tied embedding's second one)" if tied else ""),
        )


def saved_activation_bytes(shape: ModelShape, setup: TrainingSetup, block: float) -> float:
    """Bytes autograd holds when the backward pass starts (full rows, all labelled):
    every block's saved tensors (``block`` bytes each), or with gradient checkpointing each
    block's input (the fp32 residual stream), and what the final norm and the head keep."""
    h, tokens = shape.hidden_size, setup.tokens
    final = FP32 * h  # the final norm's input
    if setup.method == "full":  # its normalized input, and the head's input (it trains)
        final += FP32 * h + setup.compute_bytes * h
    if setup.gradient_checkpointing:
        # Packed rows' boolean mask (one byte per position pair) is an input of every
        # checkpointed block, so it lives until the backward pass is done.
        mask = setup.max_seq_length if setup.packing else 0
        return (shape.num_layers * FP32 * h + final + mask) * tokens
    return shape.num_layers * block + final * tokens


def block_bytes_per_token(
    shape: ModelShape, setup: TrainingSetup, adapted: tuple[Projection, ...]
) -> float:
    """Bytes one decoder block saves per token (the tensor inventory in docs/training.md).

    The residual stream is fp32 (the weights are), so the norms' inputs are 4 bytes; tensors
    a linear layer produces are in the compute precision ``c``.
    """
    c, h, i, s = (
        setup.compute_bytes,
        shape.hidden_size,
        shape.intermediate_size,
        setup.max_seq_length,
    )
    full = setup.method == "full"
    q_dim = shape.q_dim
    # Packed rows carry a block-diagonal mask; with a mask transformers repeats k/v to every
    # head for SDPA instead of using its grouped-query path.
    kv_dim = q_dim if setup.packing else shape.kv_dim
    total = 2 * FP32 * h  # the two norms' inputs (the residual stream)
    if full:
        total += 2 * FP32 * h  # their normalized inputs (the norm weights train)
    total += c * (2 * q_dim + 2 * kv_dim)  # rotated q, k, v and the attention output
    total += FP32 * shape.num_heads  # SDPA's log-sum-exp per head
    if setup.packing:
        total += c * s  # the additive mask SDPA builds per block: s x s per row
    if setup.attention == "eager":
        total += (FP32 + c) * shape.num_heads * s  # fp32 softmax and its cast, per head
    total += (3 if shape.gated_mlp else 2) * c * i  # gate, its activation, up (or fc, act)
    return total + _projection_input_bytes(shape, setup, adapted)


def _projection_input_bytes(
    shape: ModelShape, setup: TrainingSetup, adapted: tuple[Projection, ...]
) -> float:
    """The inputs linear layers keep to compute their weights' (or adapters') gradients."""
    c, h, i = setup.compute_bytes, shape.hidden_size, shape.intermediate_size
    # A tensor several projections read is saved once when they read it as it is (fp32, no
    # casts); the attention output is already saved by SDPA.
    shared_size = {"attn_in": FP32 * h, "attn_out": 0, "mlp_in": FP32 * h, "mlp_mid": c * i}
    shared: set[str] = set()
    total = 0.0
    adapted_set = set(adapted)
    for projection in shape.projections():
        width = projection.in_features
        if setup.method == "full":
            if projection.reads == "mlp_mid" or not setup.autocast:
                shared.add(projection.reads)  # the MLP product is already in compute dtype
            else:
                total += c * width  # autocast casts each projection's input separately
            continue
        if setup.method == "qlora":
            total += c * width  # bitsandbytes' 4-bit matmul keeps its cast input
        if projection not in adapted_set:
            continue
        total += c * setup.lora_r  # lora_B's input
        if setup.lora_dropout > 0:
            total += MASK_BYTES * width + (c if setup.autocast else FP32) * width
        elif setup.autocast:
            total += c * width  # each adapter casts its input
        else:
            shared.add(projection.reads)
    return total + sum(shared_size[group] for group in shared)
