"""The scores a version keeps on its ModelVersions item, so lists never open S3.

``scores_summary`` condenses an evaluation report and the gate's decision into
``{suite: {metric, value, ci_low, ci_high, n_items, version, champion, diff, diff_ci_low,
diff_ci_high, passed, role, lower_is_better}}`` (a few hundred bytes per suite). The value's
CI is the normal interval from the report's standard error (for perplexity: from the
per-token NLL's standard error, exponentiated); the difference and its CI are the gate's
paired comparison with the champion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from statistics import NormalDist
from typing import Any

from tuneloop.gating.decide import GateDecision

MAX_SUMMARY_CHARS = 1000


def _number(value: Any) -> Decimal | None:
    """DynamoDB wants Decimals; NaN and infinities are left out."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return Decimal(repr(round(float(value), 6)))


def _primary_metric(result: Mapping[str, Any]) -> str:
    for metric in ("acc", "perplexity", "exact_match"):
        if isinstance(result.get(metric), int | float):
            return metric
    return ""


def scores_summary(
    report: Mapping[str, Any], decision: GateDecision | None, *, confidence: float = 0.95
) -> dict[str, dict[str, Any]]:
    """Per suite of the candidate: its score with a CI, and the gate's paired difference
    (none without a ``decision``: a benchmark run outside the gate)."""
    results = report.get("results")
    candidate = results.get("candidate") if isinstance(results, Mapping) else None
    if not isinstance(candidate, Mapping):
        return {}
    benchmarks = report.get("benchmarks") if isinstance(report.get("benchmarks"), Mapping) else {}
    assert isinstance(benchmarks, Mapping)
    comparisons = {c.suite: c for c in decision.comparisons} if decision else {}
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    summary: dict[str, dict[str, Any]] = {}
    for suite, result in sorted(candidate.items()):
        if not isinstance(result, Mapping):
            continue
        comparison = comparisons.get(str(suite))
        metric = comparison.metric if comparison else _primary_metric(result)
        value = result.get(metric)
        if not metric or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        entry: dict[str, Any] = {"metric": metric, "value": _number(value)}
        low, high = _value_ci(result, metric, float(value), z)
        entry["ci_low"], entry["ci_high"] = _number(low), _number(high)
        info = benchmarks.get(suite)
        if isinstance(info, Mapping):
            entry["n_items"] = info.get("n_items")
            entry["version"] = info.get("version")
        if entry.get("n_items") is None:
            entry["n_items"] = result.get("n_items")
        if comparison is not None:
            entry.update(
                role=comparison.role,
                champion=_number(comparison.champion),
                diff=_number(comparison.diff),
                diff_ci_low=_number(comparison.ci_low),
                diff_ci_high=_number(comparison.ci_high),
                passed=comparison.passed,
            )
            if comparison.lower_is_better:
                entry["lower_is_better"] = True
        summary[str(suite)] = {k: v for k, v in entry.items() if v is not None and v != ""}
    return summary


def _value_ci(
    result: Mapping[str, Any], metric: str, value: float, z: float
) -> tuple[float | None, float | None]:
    if metric == "perplexity":
        nll, se = result.get("nll_per_token"), result.get("nll_per_token_stderr")
        if isinstance(nll, int | float) and isinstance(se, int | float):
            return math.exp(nll - z * se), math.exp(nll + z * se)
        return None, None
    se = result.get(f"{metric}_stderr")
    if isinstance(se, bool) or not isinstance(se, int | float):
        return None, None
    return max(0.0, value - z * se), min(1.0, value + z * se)


def gate_fields(
    report: Mapping[str, Any],
    decision: GateDecision,
    benchmark_versions: Mapping[str, str],
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """What the gate stores on the version item besides its decision's URI."""
    summary = decision.summary
    if len(summary) > MAX_SUMMARY_CHARS:
        summary = summary[: MAX_SUMMARY_CHARS - 1] + "…"
    return {
        "gate_approved": decision.approved,
        "gate_summary": summary,
        # One JSON string, not a nested map: list views scan every version's summary, and a
        # string attribute costs a Scan (in DynamoDB and even more in the local emulator) a
        # fraction of what five nested maps of numbers do; nothing queries inside it.
        "scores": json.dumps(
            scores_summary(report, decision, confidence=confidence), default=float, sort_keys=True
        ),
        "benchmark_versions": dict(benchmark_versions),
    }
