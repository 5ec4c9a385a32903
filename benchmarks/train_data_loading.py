"""Train-channel loading: the ``datasets`` path against the list loader it replaced.

For each size (10k, 100k, 1M generated records: half text, half chat, lengths drawn from a
log-normal distribution as in real fine-tuning sets) the Train job
(``training_containers/train.py``) runs a fixed number of steps on a tiny Llama (byte-level
tokenizer) in its own child process, so each peak RSS is clean:

- ``list``: the job as of ``BASELINE_COMMIT`` (every record parsed into a list, every record
  encoded into a list of examples), extracted with ``git archive`` into a scratch folder;
- ``datasets cold``: today's job with an empty checkpoint dir (Arrow table, then tokens);
- ``datasets warm``: today's job again on the same checkpoint dir (a spot restart: the
  cached tokens are read, nothing is tokenized).

Printed per run: peak RSS (ru_maxrss of the child; it counts touched pages of memory-mapped
files too) and the peak anonymous RSS (sampled; memory the kernel cannot drop), the time to
the first optimizer step (data preparation + model load + one step), data preparation in
records/s and tokens/s, the loop's tokens/s, and the ratios against ``list``::

    .venv/bin/python benchmarks/train_data_loading.py                    # 10k, 100k, 1M
    .venv/bin/python benchmarks/train_data_loading.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/unit"))

from tiny_models import make_tiny_causal_lm  # noqa: E402 (after the sys.path line)

# The last commit whose trainer held the channel in lists.
BASELINE_COMMIT = "204e0e1f606be0b4fc6a36270f0417854f74df89"
WORDS = (  # noqa: SIM905 (a sentence reads better than a list of quoted words)
    "the order refund shipping account password invoice warranty delivery customer support "
    "please thanks issue could would should because status update return label payment card "
    "address email number tracking package arrived damaged missing replace cancel policy "
    "days within business team help question answer again soon today tomorrow week"
).split()
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from training_containers.train import main
import tuneloop.training.data, tuneloop.training.loop  # imports are not data preparation
print("ready", flush=True)
sys.exit(main(json.loads(sys.argv[2])))
"""


def words(rng: random.Random, median_chars: float, sigma: float, cap: int) -> str:
    size = min(cap, max(8, int(rng.lognormvariate(math.log(median_chars), sigma))))
    return " ".join(rng.choices(WORDS, k=max(1, size // 7)))


def generate(path: Path, count: int, seed: int = 5) -> None:
    """Half text documents (median ~600 chars), half 1-3 turn chats (system prompt at times)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for index in range(count):
            record: dict[str, Any]
            if index % 2 == 0:
                record = {"text": words(rng, 600, 0.9, 12_000)}
            else:
                messages = []
                if rng.random() < 0.3:
                    messages.append({"role": "system", "content": words(rng, 120, 0.5, 600)})
                for _ in range(rng.choice((1, 1, 2, 3))):
                    messages.append({"role": "user", "content": words(rng, 180, 0.8, 3_000)})
                    messages.append({"role": "assistant", "content": words(rng, 300, 0.9, 4_000)})
                record = {"messages": messages}
            out.write(json.dumps(record) + "\n")


def baseline_tree(scratch: Path) -> Path:
    tree = scratch / "baseline"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BASELINE_COMMIT, "tuneloop", "training_containers"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def anon_sampler(pid: int, peak: list[int], done: threading.Event) -> None:
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
        except OSError:
            return
        done.wait(0.05)


def run_job(tree: Path, job: Path, channel: Path, checkpoints: Path, args: Any) -> dict[str, Any]:
    """One Train job in a child process; its timings, peak memory and report."""
    out = job / "out"
    env = os.environ | {
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_MODEL_DIR": str(out / "model"),
        "SM_OUTPUT_DATA_DIR": str(out / "data"),
        "SM_OUTPUT_DIR": str(out),
        "SM_INPUT_CONFIG_DIR": str(job / "config"),
        "TUNELOOP_OFFLINE": "1",
    }
    env.pop("SM_HPS", None)
    argv = [
        "--base_model", str(args.model), "--max_steps", str(args.steps),
        "--per_device_batch_size", "8", "--max_seq_length", str(args.max_seq_length),
        "--num_threads", "1", "--precision", "fp32", "--checkpoint_dir", str(checkpoints),
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tree), json.dumps(argv)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak_anon, done = [0], threading.Event()
    sampler = threading.Thread(target=anon_sampler, args=(child.pid, peak_anon, done))
    sampler.start()
    marks: dict[str, float] = {}
    assert child.stdout is not None
    tail: list[str] = []
    for line in child.stdout:
        now = time.perf_counter() - started
        tail = [*tail, line][-20:]
        if line.startswith("ready"):
            marks.setdefault("ready", now)
        elif line.startswith("train: ") and " records from " in line:
            marks.setdefault("read", now)
        elif line.startswith("train: device"):
            marks.setdefault("model_loaded", now)
        elif line.startswith("step 1/"):
            marks.setdefault("first_step", now)
    _, status, usage = os.wait4(child.pid, 0)
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("train job failed:\n" + "".join(tail))
    report = json.loads((out / "data/training_report.json").read_text())
    return {
        "wall_s": time.perf_counter() - started,
        "first_step_s": marks["first_step"],
        # The channel is read before the model load and tokenized after it.
        "prep_s": marks["read"] - marks["ready"] + marks["first_step"] - marks["model_loaded"],
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "peak_anon_mb": peak_anon[0] / 1024,
        "loop_tokens_per_s": report["tokens_per_second"],
        "losses": report["losses"],
        "examples": report["examples"],
        "dataset_tokens": report.get("dataset_tokens"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max_seq_length", type=int, default=256)
    parser.add_argument(
        "--list_up_to",
        type=int,
        default=10**9,
        help="run the list baseline only up to this many records (it holds them all in memory)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="train-data-loading-") as name:
        scratch = Path(name)
        args.model = make_tiny_causal_lm(scratch / "model")
        trees = {"list": baseline_tree(scratch), "datasets": ROOT}
        for size in args.sizes:
            channel = scratch / f"channel-{size}"
            channel.mkdir()
            began = time.perf_counter()
            generate(channel / "train.jsonl", size)
            megabytes = (channel / "train.jsonl").stat().st_size / 2**20
            seconds = time.perf_counter() - began
            print(f"\n{size:,} records, {megabytes:,.0f} MB of JSONL (made in {seconds:.0f}s), "
                  f"{args.steps} steps:", flush=True)  # fmt: skip
            results: dict[str, dict[str, Any]] = {}
            cache = scratch / f"checkpoints-{size}"
            variants = [
                ("list", trees["list"], scratch / f"list-checkpoints-{size}"),
                ("datasets cold", trees["datasets"], cache),
                ("datasets warm", trees["datasets"], cache),
            ]
            for variant, tree, checkpoints in variants[0 if size <= args.list_up_to else 1 :]:
                result = run_job(tree, scratch / f"job-{size}-{variant.replace(' ', '-')}",
                                 channel, checkpoints, args)  # fmt: skip
                results[variant] = result
                print_result(variant, result, size, results.get("datasets cold", result))
            disk = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20
            print(f"  data cache in the checkpoint dir: {disk:,.0f} MB")
            if "list" not in results:
                continue
            same = results["list"]["losses"] == results["datasets cold"]["losses"]
            print(f"  same losses as list: {same}")
            for variant in ("datasets cold", "datasets warm"):
                base, ours = results["list"], results[variant]
                rss = ours["peak_rss_mb"] / base["peak_rss_mb"]
                print(
                    f"  {variant} / list: peak RSS {rss:.2f}x, "
                    f"first step {ours['first_step_s'] / base['first_step_s']:.2f}x, "
                    f"prep {base['prep_s'] / ours['prep_s']:.2f}x as fast, "
                    f"loop tokens/s {ours['loop_tokens_per_s'] / base['loop_tokens_per_s']:.2f}x"
                )


def print_result(variant: str, result: dict[str, Any], size: int, ours: dict[str, Any]) -> None:
    """``ours``: a run of this commit, whose report counts the data set's tokens."""
    prep = result["prep_s"]
    token_rate = f"{ours['dataset_tokens'] / prep:,.0f}" if ours.get("dataset_tokens") else "?"
    print(
        f"  {variant:<14} peak RSS {result['peak_rss_mb']:>7,.0f} MB"
        f" (anon {result['peak_anon_mb']:>6,.0f})"
        f"  first step {result['first_step_s']:>7.1f}s  prep {prep:>7.1f}s"
        f" ({size / prep:>8,.0f} records/s, {token_rate} tokens/s)"
        f"  loop {result['loop_tokens_per_s']:>7,.0f} tokens/s  wall {result['wall_s']:>6.1f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()
