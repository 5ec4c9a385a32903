"""Score one model on a set of benchmarks and assemble ``evaluation.json``.

Multiple choice (lm-eval ``output_type: multiple_choice``): each choice is the continuation
``" " + choice`` (no space when the prompt already ends in whitespace); the prediction is
the choice with the highest log-likelihood (``acc``), and for ``acc_norm`` the highest
log-likelihood per character of the choice text (lm-eval's ``len(choice)``). Items from
lm-eval task YAMLs carry their ``target_delimiter`` and use it as is.

Loglikelihood (lm-eval ``output_type: loglikelihood``): ``acc`` is the share of items whose
continuation is the greedy one, ``perplexity`` is ``exp(-mean log-likelihood)``, as lm-eval
aggregates them. Generative: greedy generation scored by the item's scorer; ``acc`` is the
mean score. The held-out perplexity suite is described in ``tuneloop.evaluation.perplexity``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from tuneloop.evaluation import lm
from tuneloop.evaluation.benchmarks import (
    Benchmark,
    GenerativeItem,
    LoglikelihoodItem,
    MultipleChoiceItem,
)
from tuneloop.evaluation.metrics import argmax, mean, mean_stderr
from tuneloop.evaluation.perplexity import HeldoutSet, score_heldout
from tuneloop.evaluation.scorers import score_generation

Log = Callable[[str], None]


def continuation(prompt: str, choice: str, delimiter: str | None = None) -> str:
    """``delimiter + choice``; without a delimiter, a space unless the prompt ends in one."""
    if delimiter is not None:
        return delimiter + choice
    return choice if prompt[-1:].isspace() else " " + choice


def evaluate_model(
    model: Any,
    tokenizer: Any,
    benchmarks: Sequence[Benchmark],
    *,
    batch_size: int,
    label: str = "model",
    log: Log = print,
    heldout: HeldoutSet | None = None,
) -> dict[str, dict[str, Any]]:
    """``{suite: {"acc", "acc_stderr", ["acc_norm"], "n_items", "items"}}`` for one model."""
    results: dict[str, dict[str, Any]] = {}
    for bench in benchmarks:
        started = time.monotonic()
        log(f"[{label}] {bench.name}: scoring {len(bench.items)} {bench.kind} items")
        mc = [item for item in bench.items if isinstance(item, MultipleChoiceItem)]
        gen = [item for item in bench.items if isinstance(item, GenerativeItem)]
        ll = [item for item in bench.items if isinstance(item, LoglikelihoodItem)]
        items = score_multiple_choice(model, tokenizer, mc, batch_size, label, log)
        items += score_generative(model, tokenizer, gen, batch_size)
        items += score_loglikelihood(model, tokenizer, ll, batch_size, label, log)
        scores = [item["score"] for item in items]
        result: dict[str, Any] = {"acc": mean(scores), "acc_stderr": mean_stderr(scores)}
        if mc:
            result["acc_norm"] = mean([item["score_norm"] for item in items])
        if ll:
            result["perplexity"] = math.exp(-mean([item["loglikelihood"] for item in items]))
        result["n_items"] = len(items)
        result["items"] = items
        results[bench.name] = result
        log(f"[{label}] {bench.name}: done in {time.monotonic() - started:.1f}s")
        for metric in ("acc", "acc_norm"):
            if metric in result:
                log(f"{label}_{bench.name}_{metric}={result[metric]:.6f};")
    if heldout is not None:
        results[heldout.name] = evaluate_heldout(model, tokenizer, heldout, batch_size, label, log)
    return results


def evaluate_heldout(
    model: Any, tokenizer: Any, heldout: HeldoutSet, batch_size: int, label: str, log: Log
) -> dict[str, Any]:
    started = time.monotonic()
    log(f"[{label}] {heldout.name}: scoring {len(heldout.records)} held-out records")

    def progress(done: int, total: int) -> None:
        log(f"[{label}]   records {done}/{total}")

    result = score_heldout(model, tokenizer, heldout, batch_size, progress)
    log(f"[{label}] {heldout.name}: done in {time.monotonic() - started:.1f}s")
    log(f"{label}_{heldout.name}_perplexity={result['perplexity']:.6f};")
    return result


def score_multiple_choice(
    model: Any,
    tokenizer: Any,
    items: Sequence[MultipleChoiceItem],
    batch_size: int,
    label: str = "model",
    log: Log = print,
) -> list[dict[str, Any]]:
    requests = [
        (item.prompt, continuation(item.prompt, choice, item.target_delimiter))
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
        lengths = [max(1, len(choice)) for choice in item.choices]  # lm-eval: characters
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


def score_loglikelihood(
    model: Any,
    tokenizer: Any,
    items: Sequence[LoglikelihoodItem],
    batch_size: int,
    label: str = "model",
    log: Log = print,
) -> list[dict[str, Any]]:
    if not items:
        return []

    def progress(done: int, total: int) -> None:
        log(f"[{label}]   forward passes {done}/{total}")

    requests = [(item.prompt, item.continuation) for item in items]
    scored = lm.loglikelihoods_greedy(model, tokenizer, requests, batch_size, progress)
    return [
        {
            "id": item.id,
            "score": float(greedy),
            "prediction": greedy,
            "loglikelihood": ll,
            "tags": list(item.tags),
        }
        for item, (ll, greedy) in zip(items, scored, strict=True)
    ]


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
    heldout: HeldoutSet | None = None,
) -> dict[str, Any]:
    """``evaluation.json``: benchmark versions, then results per model role."""
    described = {bench.name: bench.describe() for bench in benchmarks}
    if heldout is not None:
        described[heldout.name] = heldout.describe()
    report: dict[str, Any] = {"benchmarks": described, "results": results}
    if settings:
        report["settings"] = settings
    return report
