"""Fidelity and speed of TuneLoop's MMLU scoring against lm-evaluation-harness (baseline).

Same model (the demo SmolLM2-135M-Instruct, converted once and cached), same MMLU items (a
stratified subset of the packaged test set), same batch size, same process. lm-eval runs
offline on a task defined over a local JSONL written to a temporary folder (the prompt of
``eval_containers/tasks/mmlu.yaml``), with ``HFLM(pretrained=<the loaded model>)``.

Printed:

- fidelity: max |Δ log-likelihood| over every (item, choice) (goal <= 1e-4), whether the
  acc / acc_norm predictions agree item by item, and whether the prompts are identical;
- speed: items/second of each scorer on the identical (context, continuation) requests
  (model time only), as ``ours/lm-eval speed ratio = X`` (goal >= 2 at 0 shot, >= 5 at few
  shot), with plain batching (our scorer, sharing off) in the same rotation. The machine
  may be shared, so the runners alternate: with ``--items-per-subject`` one subject at a
  time (each subject's items are scored by every runner in turn, the order rotating, and
  a repeat's time is the sum over subjects), otherwise whole runs; the ratio is taken per
  repeat and the median printed, in wall time and in CPU time of the process.

Run (needs the ``ml`` and ``dev`` groups; ~35 s more the first time, to convert the model)::

    .venv/bin/python benchmarks/eval_fidelity.py --items 40 --batch-size 8
    .venv/bin/python benchmarks/eval_fidelity.py --subjects 4 --items-per-subject 20 --shots 5

The second is shaped like a real run (items of a subject share the header and, at few
shot, the solved examples); ``--share off`` times plain batching, ``--no-baseline`` times
ours alone (``--items 0`` is the whole 14,042-item set).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before any Hugging Face import: nothing may be fetched from a hub.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TUNELOOP_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tuneloop.evaluation.benchmarks import MultipleChoiceItem  # noqa: E402
from tuneloop.evaluation.mmlu import (  # noqa: E402
    LETTERS,
    load_mmlu,
    mmlu_data_path,
    read_mmlu,
    stratified_subset,
    with_fewshot,
)

TASK = "mmlu_fidelity"


@dataclass(frozen=True)
class Args:
    items: int
    batch_size: int
    seed: int
    model: str
    fewshot: int
    repeats: int
    subjects: int
    items_per_subject: int
    share: str
    baseline: bool
    threads: int
    also_batch_sizes: tuple[int, ...]


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40, help="MMLU items (stratified subset)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of both scorers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified subset")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="catalog reference")
    parser.add_argument(
        "--fewshot", "--shots", type=int, default=0, help="solved examples per prompt"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each")
    parser.add_argument(
        "--subjects",
        type=int,
        default=0,
        help="draw the items from the first N subjects only (0: all), as a full-MMLU run "
        "has ~250 questions per subject sharing the header and the few-shot examples",
    )
    parser.add_argument(
        "--items-per-subject",
        type=int,
        default=0,
        help="with --subjects: this many items of each subject (a stratified draw within "
        "it) instead of --items in all; a real MMLU run has ~250 per subject",
    )
    parser.add_argument(
        "--share",
        choices=("auto", "on", "off"),
        default="auto",
        help="our prefix sharing: the cost model (default), every group, or never",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads of both scorers (0: torch's default); on a machine shared with "
        "other jobs, 1 avoids the stalls of threads waiting for each other",
    )
    parser.add_argument(
        "--also-batch-sizes",
        default="",
        help="comma-separated batch sizes at which ours scores the items once more, to "
        "check that results do not depend on the batch size (e.g. 1,3)",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="time ours only, once (the full 14k set; --items 0 --subjects 0)",
    )
    ns = parser.parse_args(argv)
    return Args(
        ns.items,
        ns.batch_size,
        ns.seed,
        ns.model,
        ns.fewshot,
        ns.repeats,
        ns.subjects,
        ns.items_per_subject,
        ns.share,
        not ns.no_baseline,
        ns.threads,
        tuple(int(size) for size in ns.also_batch_sizes.split(",") if size.strip()),
    )


def subset_rows(items: list[MultipleChoiceItem]) -> list[dict[str, Any]]:
    """The raw MMLU rows of ``items``, in item order (ids follow tuneloop.evaluation.mmlu)."""
    wanted = {item.id: index for index, item in enumerate(items)}
    rows: list[dict[str, Any] | None] = [None] * len(items)
    per_subject: dict[str, int] = defaultdict(int)
    for raw in mmlu_data_path().read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        row = json.loads(raw)
        if row.get("correct_answer") not in LETTERS:
            continue  # the stray CSV header rows
        subject = row["topic"]
        item_id = f"{subject.replace(' ', '_')}/{per_subject[subject]}"
        per_subject[subject] += 1
        if item_id in wanted:
            rows[wanted[item_id]] = {**row, "tuneloop_id": item_id}
    missing = [items[i].id for i, row in enumerate(rows) if row is None]
    if missing:
        raise SystemExit(f"MMLU rows not found for {missing}")
    return [row for row in rows if row is not None]


def subject_chunks(items: list[MultipleChoiceItem]) -> list[list[MultipleChoiceItem]]:
    """``items`` split by subject (first tag), subjects in order of first appearance."""
    chunks: dict[str, list[MultipleChoiceItem]] = {}
    for item in items:
        chunks.setdefault(item.tags[0], []).append(item)
    return list(chunks.values())


def write_task(folder: Path, rows: list[dict[str, Any]]) -> None:
    """The shipped mmlu.yaml pointed at a local JSONL of ``rows``."""
    data = folder / "mmlu_subset.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = yaml.safe_load((ROOT / "eval_containers" / "tasks" / "mmlu.yaml").read_text())
    config["task"] = TASK
    config["dataset_kwargs"] = {"data_files": {"test": str(data)}}
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def run_ours(
    model: Any,
    tokenizer: Any,
    items: list[MultipleChoiceItem],
    batch_size: int,
    log: Any = lambda _: None,
) -> tuple[list[dict[str, Any]], float]:
    from tuneloop.evaluation.runner import score_multiple_choice

    started = time.perf_counter()
    results = score_multiple_choice(model, tokenizer, items, batch_size, log=log)
    return results, time.perf_counter() - started


def progress_log(every: float = 60.0) -> Any:
    """A runner log printing the forward-pass progress, elapsed time and rate every ``every`` s."""
    started = last = time.perf_counter()

    def log(message: str) -> None:
        nonlocal last
        now = time.perf_counter()
        if "forward passes" not in message or now - last < every:
            return
        last = now
        done, total = (int(x) for x in message.rsplit(" ", 1)[1].split("/"))
        rate = done / (now - started)
        print(
            f"  {done}/{total} inputs in {now - started:.0f}s ({rate:.2f}/s; "
            f"projected total {total / rate:.0f}s)",
            flush=True,
        )

    return log


def run_lm_eval_task(lm: Any, folder: Path, n_items: int) -> tuple[list[dict[str, Any]], float]:
    """lm-eval end to end on the task: (samples in document order, seconds)."""
    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    out = evaluator.simple_evaluate(
        model=lm,
        tasks=[TASK],
        num_fewshot=0,
        task_manager=manager,
        log_samples=True,
        bootstrap_iters=0,
    )
    elapsed = time.perf_counter() - started
    if out is None:
        raise SystemExit("lm-eval returned no results")
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    if len(samples) != n_items:
        raise SystemExit(f"lm-eval scored {len(samples)} documents, expected {n_items}")
    return samples, elapsed


def run_lm_eval_requests(lm: Any, requests: list[tuple[str, str]]) -> tuple[list[float], float]:
    """lm-eval's HFLM.loglikelihood on the very requests TuneLoop scores (model time only)."""
    from lm_eval.api.instance import Instance

    instances = [
        Instance(request_type="loglikelihood", doc={}, arguments=request, idx=index)
        for index, request in enumerate(requests)
    ]
    started = time.perf_counter()
    scored = lm.loglikelihood(instances, disable_tqdm=True)
    return [float(ll) for ll, _ in scored], time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError as exc:
        raise SystemExit(f"lm-eval is not installed ({exc}): pip install lm-eval==0.4.13") from None
    import torch

    from tuneloop.evaluation.runner import continuation
    from tuneloop.models.catalog import resolve_model
    from tuneloop.models.loading import load_model_dir

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"model {args.model}: resolving (converted once and cached) ...", flush=True)
    started = time.perf_counter()
    model, tokenizer = load_model_dir(resolve_model(args.model))
    model.eval()
    print(f"model ready in {time.perf_counter() - started:.1f}s", flush=True)

    from tuneloop.evaluation import lm as tuneloop_lm

    tuneloop_lm.SHARE_PREFIXES = {"auto": None, "on": True, "off": False}[args.share]
    if args.subjects:
        every = with_fewshot(read_mmlu(mmlu_data_path()), args.fewshot)
        chosen = sorted({item.tags[0] for item in every})[: args.subjects]
        if args.items_per_subject:
            picked = {
                item.id
                for subject in chosen
                for item in stratified_subset(
                    [i for i in every if i.tags[0] == subject], args.items_per_subject, args.seed
                )
            }
            items = [item for item in every if item.id in picked]
        else:
            items = stratified_subset(
                [item for item in every if item.tags[0] in chosen], args.items, args.seed
            )
    else:
        bench = load_mmlu(args.items or None, args.seed, num_fewshot=args.fewshot)
        items = [item for item in bench.items if isinstance(item, MultipleChoiceItem)]
    if any(len(item.choices) != 4 for item in items):
        raise SystemExit("expected four choices per MMLU item")
    print(
        f"{len(items)} MMLU items, {args.fewshot}-shot, over "
        f"{len({i.tags[0] for i in items})} subjects; {torch.get_num_threads()} threads; "
        f"prefix sharing: {args.share}",
        flush=True,
    )
    if not args.baseline:
        run_ours(model, tokenizer, items[:2], args.batch_size)
        cpu_started = time.process_time()
        solo, elapsed = run_ours(model, tokenizer, items, args.batch_size, progress_log())
        acc = sum(r["score"] for r in solo) / len(items)
        acc_norm = sum(r["score_norm"] for r in solo) / len(items)
        print(
            f"ours: {len(items)} items in {elapsed:.1f}s ({len(items) / elapsed:.2f} items/s, "
            f"CPU time {time.process_time() - cpu_started:.0f}s), acc {acc:.4f}, "
            f"acc_norm {acc_norm:.4f}"
        )
        return 0

    # lm-eval's defaults (logits cache on: one forward per context; right padding; full
    # logits) with our batch size.
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size)
    requests = [(i.prompt, continuation(i.prompt, c)) for i in items for c in i.choices]

    # Warm-up (first-call allocations, thread pools) for both, on two items.
    run_ours(model, tokenizer, items[:2], args.batch_size)
    run_lm_eval_requests(lm, requests[:8])

    # The machine may be shared: the runners alternate (A B C, B C A, ...) over chunks (one
    # subject each with --items-per-subject, else the whole run), so a burst of load
    # elsewhere hits all alike; the ratio is taken per repeat, the median reported.
    chunks = subject_chunks(items) if args.items_per_subject else [items]
    items = [item for chunk in chunks for item in chunk]  # chunk order (the same items)
    requests = [(i.prompt, continuation(i.prompt, c)) for i in items for c in i.choices]
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    plain_ratios: list[float] = []
    ours: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    theirs_lls: list[float] = []
    # Plain batching (sharing off) runs in the same rotation, unless it is what ours is.
    order = ["ours", "lm-eval"] + (["plain"] if args.share != "off" else [])
    for repeat in range(args.repeats):
        times: dict[str, float] = defaultdict(float)
        cpu: dict[str, float] = defaultdict(float)
        ours, plain, theirs_lls = [], [], []
        for number, chunk in enumerate(chunks):
            shift = (repeat + number) % len(order)
            chunk_requests = [
                (i.prompt, continuation(i.prompt, c)) for i in chunk for c in i.choices
            ]
            for runner in order[shift:] + order[:shift]:
                cpu_started = time.process_time()
                if runner == "ours":
                    scored, elapsed = run_ours(model, tokenizer, chunk, args.batch_size)
                    ours += scored
                elif runner == "plain":
                    default, tuneloop_lm.SHARE_PREFIXES = tuneloop_lm.SHARE_PREFIXES, False
                    scored, elapsed = run_ours(model, tokenizer, chunk, args.batch_size)
                    tuneloop_lm.SHARE_PREFIXES = default
                    plain += scored
                else:
                    lls, elapsed = run_lm_eval_requests(lm, chunk_requests)
                    theirs_lls += lls
                times[runner] += elapsed
                cpu[runner] += time.process_time() - cpu_started
        ratios.append(times["lm-eval"] / times["ours"])
        cpu_ratios.append(cpu["lm-eval"] / cpu["ours"])
        line = (
            f"  repeat {repeat + 1}/{args.repeats}: ours {times['ours']:.1f}s "
            f"({len(items) / times['ours']:.2f} items/s), lm-eval {times['lm-eval']:.1f}s "
            f"({len(items) / times['lm-eval']:.2f} items/s), ratio {ratios[-1]:.2f} "
            f"(CPU time {cpu_ratios[-1]:.2f})"
        )
        if "plain" in times:
            plain_ratios.append(times["plain"] / times["ours"])
            line += f"; plain batching {times['plain']:.1f}s, ours/plain {plain_ratios[-1]:.2f}"
        print(line, flush=True)

    # Fidelity on the identical requests: per-choice log-likelihoods and predictions.
    max_delta_requests = 0.0
    acc_equal = acc_norm_equal = True
    for index, (mine, item) in enumerate(zip(ours, items, strict=True)):
        direct = theirs_lls[index * 4 : index * 4 + 4]
        for ll, direct_ll in zip(mine["loglikelihoods"], direct, strict=True):
            max_delta_requests = max(max_delta_requests, abs(ll - direct_ll))
        lengths = [len(choice) for choice in item.choices]
        acc_equal &= mine["prediction"] == max(range(4), key=lambda c: direct[c])
        acc_norm_equal &= mine["prediction_norm"] == max(
            range(4), key=lambda c: direct[c] / lengths[c]
        )

    max_delta_plain = 0.0
    plain_equal = True
    for mine, other in zip(ours, plain, strict=False):
        plain_equal &= mine["prediction"] == other["prediction"]
        for ll, plain_ll in zip(mine["loglikelihoods"], other["loglikelihoods"], strict=True):
            max_delta_plain = max(max_delta_plain, abs(ll - plain_ll))

    # Determinism across batch sizes: ours again at each other batch size, against the first.
    across: list[str] = []
    for size in args.also_batch_sizes:
        again, _ = run_ours(model, tokenizer, items, size)
        delta = max(
            abs(a - b)
            for mine, other in zip(ours, again, strict=True)
            for a, b in zip(mine["loglikelihoods"], other["loglikelihoods"], strict=True)
        )
        same = all(
            mine["prediction"] == other["prediction"]
            and mine["prediction_norm"] == other["prediction_norm"]
            for mine, other in zip(ours, again, strict=True)
        )
        across.append(f"batch size {size}: max |delta| {delta:.3g}, predictions equal: {same}")

    n = len(items)
    print()
    print(f"items: {n}, choices: {len(requests)}, batch size: {args.batch_size}")
    print(f"max |delta loglik| vs lm-eval HFLM, same requests: {max_delta_requests:.3g}")
    for line in across:
        print(f"ours at {line} (vs batch size {args.batch_size})")
    print(f"acc / acc_norm prediction per item equal: {acc_equal} / {acc_norm_equal}")
    if args.fewshot == 0:
        # The task path too: lm-eval renders the prompts itself from the shipped YAML.
        print("scoring: lm-eval task (simple_evaluate) ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="tuneloop-fidelity-") as tmp:
            write_task(Path(tmp), subset_rows(items))
            samples, _ = run_lm_eval_task(lm, Path(tmp), n)
        max_delta = 0.0
        prompts_equal = True
        for mine, sample, item in zip(ours, samples, items, strict=True):
            prompts_equal &= sample["arguments"][0][0] == item.prompt
            lls = [float(resp[0][0]) for resp in sample["resps"]]
            for ll, task_ll in zip(mine["loglikelihoods"], lls, strict=True):
                max_delta = max(max_delta, abs(ll - task_ll))
            acc_equal &= mine["score"] == float(sample["acc"])
            acc_norm_equal &= mine["score_norm"] == float(sample["acc_norm"])
        ours_acc = sum(r["score"] for r in ours) / n
        theirs_acc = sum(float(s["acc"]) for s in samples) / n
        print(f"prompts identical to lm-eval's task rendering: {prompts_equal}")
        print(f"max |delta loglik| vs lm-eval task: {max_delta:.3g} (goal <= 1e-4)")
        print(f"acc: ours {ours_acc:.4f}, lm-eval {theirs_acc:.4f}; per item equal: {acc_equal}")
    print(f"ratios per repeat: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"CPU-time ratios per repeat: {', '.join(f'{r:.2f}' for r in cpu_ratios)}")
    if plain_ratios:
        print(
            f"max |delta loglik| vs plain batching: {max_delta_plain:.3g}; "
            f"predictions equal: {plain_equal}"
        )
        print(
            f"ours/plain batching speed ratio = {statistics.median(plain_ratios):.2f} "
            f"(median; goal >= 1)"
        )
    goal = 5 if args.fewshot else 2
    print(f"ours/lm-eval speed ratio = {statistics.median(ratios):.2f} (median; goal >= {goal})")
    print(f"ours/lm-eval CPU-time ratio = {statistics.median(cpu_ratios):.2f} (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
