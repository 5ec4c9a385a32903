"""Score one model on a set of benchmarks and assemble ``evaluation.json``.

Multiple choice (lm-eval ``output_type: multiple_choice``): each choice is the continuation
``" " + choice`` (no space when the prompt already ends in whitespace); the prediction is
the choice with the highest log-likelihood (``acc``), and for ``acc_norm`` the highest
log-likelihood per UTF-8 byte of the choice text. Generative: greedy generation scored by
the item's scorer; ``acc`` is the mean score.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from tuneloop.evaluation import lm
from tuneloop.evaluation.benchmarks import Benchmark, GenerativeItem, MultipleChoiceItem
from tuneloop.evaluation.metrics import argmax, mean, mean_stderr
from tuneloop.evaluation.scorers import score_generation

Log = Callable[[str], None]


def continuation(prompt: str, choice: str) -> str:
    """lm-eval's ``target_delimiter`` (a space) unless the prompt already ends in one."""
    return choice if prompt[-1:].isspace() else " " + choice


def evaluate_model(
    model: Any,
    tokenizer: Any,
    benchmarks: Sequence[Benchmark],
    *,
    batch_size: int,
    label: str = "model",
    log: Log = print,
) -> dict[str, dict[str, Any]]:
    """``{suite: {"acc", "acc_stderr", ["acc_norm"], "n_items", "items"}}`` for one model."""
    results: dict[str, dict[str, Any]] = {}
    for bench in benchmarks:
        started = time.monotonic()
        log(f"[{label}] {bench.name}: scoring {len(bench.items)} {bench.kind} items")
        mc = [item for item in bench.items if isinstance(item, MultipleChoiceItem)]
        gen = [item for item in bench.items if isinstance(item, GenerativeItem)]
        items = score_multiple_choice(model, tokenizer, mc, batch_size, label, log)
        items += score_generative(model, tokenizer, gen, batch_size)
        scores = [item["score"] for item in items]
        result: dict[str, Any] = {"acc": mean(scores), "acc_stderr": mean_stderr(scores)}
        if mc:
            result["acc_norm"] = mean([item["score_norm"] for item in items])
        result["n_items"] = len(items)
        result["items"] = items
        results[bench.name] = result
        log(f"[{label}] {bench.name}: done in {time.monotonic() - started:.1f}s")
        for metric in ("acc", "acc_norm"):
            if metric in result:
                log(f"{label}_{bench.name}_{metric}={result[metric]:.6f};")
    return results


def score_multiple_choice(
    model: Any,
    tokenizer: Any,
    items: Sequence[MultipleChoiceItem],
    batch_size: int,
    label: str = "model",
    log: Log = print,
) -> list[dict[str, Any]]:
    requests = [
        (item.prompt, continuation(item.prompt, choice))
        for item in items
        for choice in item.choices
    ]

    def progress(done: int, total: int) -> None:
        log(f"[{label}]   forward passes {done}/{total}")

    lls = lm.loglikelihoods(model, tokenizer, requests, batch_size, progress) if requests else []
    results: list[dict[str, Any]] = []
    offset = 0
    for item in items:
        item_lls = lls[offset : offset + len(item.choices)]
        offset += len(item.choices)
        lengths = [len(choice.encode("utf-8")) for choice in item.choices]
        prediction = argmax(item_lls)
        prediction_norm = argmax([ll / n for ll, n in zip(item_lls, lengths, strict=True)])
        results.append(
            {
                "id": item.id,
                "score": float(prediction == item.answer),
                "score_norm": float(prediction_norm == item.answer),
                "prediction": prediction,
                "prediction_norm": prediction_norm,
                "target": item.answer,
                "loglikelihoods": item_lls,
                "tags": list(item.tags),
            }
        )
    return results


def score_generative(
    model: Any, tokenizer: Any, items: Sequence[GenerativeItem], batch_size: int
) -> list[dict[str, Any]]:
    # Items sharing generation settings are generated together; output keeps item order.
    texts: dict[str, str] = {}
    groups: dict[tuple[int, tuple[str, ...]], list[GenerativeItem]] = {}
    for item in items:
        groups.setdefault((item.max_new_tokens, item.stop), []).append(item)
    for (max_new_tokens, stop), group in groups.items():
        outputs = lm.generate_greedy(
            model, tokenizer, [item.prompt for item in group], max_new_tokens, stop, batch_size
        )
        texts.update({item.id: text for item, text in zip(group, outputs, strict=True)})
    return [
        {
            "id": item.id,
            "score": score_generation(
                item.scorer, texts[item.id], item.references, item.scorer_args
            ),
            "prediction": texts[item.id],
            "tags": list(item.tags),
        }
        for item in items
    ]


def build_report(
    benchmarks: Sequence[Benchmark],
    results: dict[str, dict[str, dict[str, Any]]],
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``evaluation.json``: benchmark versions, then results per model role."""
    report: dict[str, Any] = {
        "benchmarks": {bench.name: bench.describe() for bench in benchmarks},
        "results": results,
    }
    if settings:
        report["settings"] = settings
    return report
