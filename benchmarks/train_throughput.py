"""Training throughput: TuneLoop's LoRA trainer against TRL's ``SFTTrainer`` (the baseline).

Both train SmolLM2-135M-Instruct (the packaged demo model, converted once and cached) in
this process, one after the other, with the same chat records, LoRA settings, sequence
length, effective batch (examples per optimizer step), optimizer, schedule, precision and
number of steps; both compute the loss on the assistant turns only. Printed per trainer:
non-padding tokens per second of the training loop, the mean loss of the last steps, the
loss of the finished adapter on one fixed evaluation set, and the peak resident memory
(absolute, and above the level before the model load; freed heap is returned to the OS
between the runs);
then the throughput ratio (ours / TRL) of each interleaved repeat and their median::

    .venv/bin/python benchmarks/train_throughput.py                       # 20 steps x 3
    .venv/bin/python benchmarks/train_throughput.py --steps 16 --repeats 2 --batch_size 4 \
        --accumulation 1 --precision bf16 --threads 1   # the figures in docs/training.md

With ``--steps`` a multiple of the length-grouping window (16 steps), both trainers see the
same examples, so their token counts match.

TRL's run uses its documented defaults for prompt-completion data (no packing, no
padding-free batching, no length grouping: each batch padded to its longest example)
except where they would make the comparison unequal: ``gradient_checkpointing=False``
(TRL turns it on by default; ours is off) and ``completion_only_loss=True`` (the loss
covers the completion only, as ours does). ``--precision`` applies to both: bf16 means
autocast on both sides. Ours runs with its defaults: packing with position-id reset,
length-grouped steps, SDPA, the output head only on labelled positions, fused AdamW.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
import torch

from tuneloop.models.catalog import resolve_model
from tuneloop.models.loading import load_model_dir
from tuneloop.training.batching import collate
from tuneloop.training.config import TrainConfig
from tuneloop.training.data import Dataset, encode_record
from tuneloop.training.loop import _loss_sum, _split_head, train

MODEL = "smollm2-135m-instruct"
TOPICS = ["refund", "shipping", "invoice", "password", "warranty", "delivery", "account", "order"]
SYSTEM_PROMPTS = [
    "You are the support assistant of Acme Networks. Answer politely and precisely.",
    "You are a helpful assistant for Acme customers. Keep answers short unless the customer "
    "asks for details, never invent order data, and point to the help centre when unsure.",
]
DETAILS = [
    "I ordered last week and nothing has arrived yet.",
    "The confirmation email never came.",
    "My colleague says the policy changed recently.",
    "I am travelling and can only check messages in the evening.",
    "This is the second time I am asking.",
    "The tracking page shows an error when I open it.",
    "I already restarted the router twice, as the manual says.",
    "Please answer in simple words, I am not technical.",
]
LOG_LINE = "2026-11-02T10:{:02d}:17Z router[{}]: link state changed: wan0 down (code {})"


def chat_records(count: int, seed: int) -> list[dict[str, Any]]:
    """Synthetic support chats shaped like real SFT data: an optional system prompt, questions
    from one line to a pasted log, answers from one sentence to a long procedure (a long
    tail of lengths, so padding and prompt share matter as they do on real data)."""
    rng = random.Random(seed)
    records = []
    for index in range(count):
        topic = rng.choice(TOPICS)
        question = f"Question {index} about my {topic}: " + " ".join(
            rng.sample(DETAILS, rng.randint(0, len(DETAILS)))
        )
        if rng.random() < 0.25:  # a pasted log makes some prompts long
            lines = [
                LOG_LINE.format(n, 400 + n, rng.randint(1, 99)) for n in range(rng.randint(2, 8))
            ]
            question += "\nHere is the log:\n" + "\n".join(lines)
        length = min(24, int(rng.expovariate(1 / 5)) + 1)  # mostly short, some very long
        steps = [f"Step {n}: check the {topic} page and follow item {n}." for n in range(1, 25)]
        answer = f"For your {topic}: " + " ".join(steps[:length])
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if rng.random() < 0.5:
            messages.insert(0, {"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
        records.append({"messages": messages})
    return records


@dataclass
class Outcome:
    name: str
    tokens: int
    seconds: float
    losses: list[float]
    eval_loss: float
    peak_rss_mb: float
    rss_before_mb: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


class PeakRss:
    """Samples this process's RSS every 20 ms in a thread; ``peak_mb`` is the highest seen."""

    def __init__(self) -> None:
        _return_free_memory()
        self._process = psutil.Process()
        self.before_mb = self._process.memory_info().rss / 2**20
        self.peak_mb = self.before_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)

    @contextmanager
    def watching(self) -> Iterator[PeakRss]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _return_free_memory() -> None:
    """Hand freed heap back to the OS, so the second trainer starts from the same floor."""
    gc.collect()
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def eval_loss(model: Any, tokenizer: Any, records: list[dict[str, Any]], max_len: int) -> float:
    """Mean loss per assistant token over ``records`` (the same function for both adapters)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(records), 8):
            examples = [encode_record(r, tokenizer, max_len) for r in records[start : start + 8]]
            batch = collate(examples, pad_id=tokenizer.pad_token_id or 0)
            total += float(_loss_sum(model, _split_head(model), batch.tensors))
            count += batch.label_count
    return total / count


def run_ours(
    args: argparse.Namespace, records: list[dict[str, Any]], held_out: list[Any]
) -> Outcome:
    config = TrainConfig(
        base_model=MODEL,
        max_steps=args.steps,
        learning_rate=args.learning_rate,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        max_seq_length=args.max_length,
        per_device_batch_size=args.batch_size,
        gradient_accumulation_steps=args.accumulation,
        seed=0,
        precision=args.precision,
        num_threads=args.threads,
        checkpoint_dir=tempfile.mkdtemp(prefix="bench-ckpt-"),
    ).validate()
    dataset = Dataset(records, sha256="benchmark", files=[])
    with PeakRss().watching() as memory:
        result = train(config, dataset, log=_progress("ours"))
    report = result.report
    return Outcome(
        "tuneloop",
        tokens=report["tokens"],
        seconds=report["train_seconds"],
        losses=report["losses"],
        eval_loss=eval_loss(result.model, result.tokenizer, held_out, args.max_length),
        peak_rss_mb=memory.peak_mb,
        rss_before_mb=memory.before_mb,
    )


def run_trl(
    args: argparse.Namespace, records: list[dict[str, Any]], held_out: list[Any]
) -> Outcome:
    from datasets import Dataset as HFDataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.began = self.ended = 0.0
            self.losses: list[float] = []

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            self.began = time.perf_counter()

        def on_train_end(self, *_: Any, **__: Any) -> None:
            self.ended = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logs = kwargs.get("logs") or {}
            if "loss" in logs:
                self.losses.append(float(logs["loss"]))
                print(f"  trl step {state.global_step}/{steps} loss={float(logs['loss']):.4f}")

    steps = args.steps
    watcher = PeakRss()  # from before the model load, as for ours (train() loads it)
    model, tokenizer = load_model_dir(resolve_model(MODEL))
    torch.manual_seed(0)
    data = HFDataset.from_list(
        [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in records]
    )
    output_dir = tempfile.mkdtemp(prefix="bench-trl-")
    sft = SFTConfig(
        output_dir=output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.accumulation,
        learning_rate=args.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        max_length=args.max_length,
        packing=False,
        completion_only_loss=True,
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=args.precision == "bf16",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        seed=0,
    )
    lora = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    timer = Timer()
    trainer = SFTTrainer(
        model=model,
        args=sft,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[timer],
    )
    with watcher.watching() as memory:
        trainer.train()
    return Outcome(
        "trl SFTTrainer",
        tokens=int(trainer.state.num_input_tokens_seen),
        seconds=timer.ended - timer.began,
        losses=timer.losses,
        eval_loss=eval_loss(trainer.model, tokenizer, held_out, args.max_length),
        peak_rss_mb=memory.peak_mb,
        rss_before_mb=memory.before_mb,
    )


def _progress(name: str) -> Callable[[str], None]:
    def log(line: str) -> None:
        if line.startswith(("step ", "train: device")):
            print(f"  {name} {line}", flush=True)

    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per trainer")
    parser.add_argument("--records", type=int, default=200, help="synthetic chat records")
    parser.add_argument("--eval_records", type=int, default=32, help="held-out records")
    parser.add_argument("--batch_size", type=int, default=4, help="examples per micro-batch")
    parser.add_argument("--accumulation", type=int, default=2, help="micro-batches per step")
    parser.add_argument("--max_length", type=int, default=512, help="tokens per example")
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all CPUs")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per trainer")
    args = parser.parse_args(argv)
    os.environ.setdefault("TUNELOOP_OFFLINE", "1")
    threads = args.threads or len(os.sched_getaffinity(0))
    args.threads = threads
    torch.set_num_threads(threads)

    print(f"resolving {MODEL} (converted once, then cached) ...", flush=True)
    resolve_model(MODEL)
    records = chat_records(args.records, seed=0)
    held_out = chat_records(args.eval_records, seed=1)
    print(
        f"{args.records} chat records, {args.steps} steps x {args.batch_size} x "
        f"{args.accumulation} examples, max_length {args.max_length}, {args.precision}, "
        f"{threads} thread(s)",
        flush=True,
    )
    pairs: list[tuple[Outcome, Outcome]] = []
    for repeat in range(1, args.repeats + 1):  # interleaved: ours, trl, ours, trl, ...
        print(f"-- repeat {repeat}/{args.repeats}", flush=True)
        pair = []
        for runner in (run_ours, run_trl):
            _return_free_memory()
            pair.append(runner(args, records, held_out))
        pairs.append((pair[0], pair[1]))
        _print_table(pair, args.steps)

    ratios = [ours.tokens_per_second / trl.tokens_per_second for ours, trl in pairs]
    ours, baseline = pairs[-1]
    print()
    print(
        "throughput ours / trl per repeat: "
        + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
        + f"; median {statistics.median(ratios):.2f}x (goal >= 1.5x)"
    )
    gap = abs(ours.eval_loss - baseline.eval_loss) / baseline.eval_loss
    print(
        f"eval loss ours {ours.eval_loss:.4f} vs trl {baseline.eval_loss:.4f}: "
        f"{gap:.2%} apart (goal <= 2%)"
    )
    return 0


def _print_table(outcomes: list[Outcome], steps: int) -> None:
    tail = max(1, min(5, steps // 4))
    print(
        f"{'trainer':16} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} "
        f"{f'loss(last {tail})':>14} {'eval loss':>10} {'peak RSS MB':>12} {'(+ over start)':>14}"
    )
    for o in outcomes:
        print(
            f"{o.name:16} {o.tokens:>8} {o.seconds:>8.1f} {o.tokens_per_second:>9.1f} "
            f"{sum(o.losses[-tail:]) / tail:>14.4f} {o.eval_loss:>10.4f} "
            f"{o.peak_rss_mb:>12.0f} {o.peak_rss_mb - o.rss_before_mb:>14.0f}"
        )
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
