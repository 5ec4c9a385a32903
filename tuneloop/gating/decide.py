"""``decide``: the gate's rule set over an ``evaluation.json`` report.

Candidate and champion are compared item by item on the same benchmark items (one report,
one set of benchmark versions):

- ``must_pass``: the candidate's metric >= ``floor`` (with or without a champion).
- ``general`` (non-inferiority): lower bound of the paired-bootstrap CI of
  candidate - champion > -margin; McNemar's exact p-value is reported for 0/1 scores. The
  margin is ``delta``, widened (up to ``max_delta``) when the items are too few or too
  discordant for ``delta``: an equal candidate must be blocked at most ``max_false_block``
  of the time (``stats.reliable_margin``). The decision reports the margin, the chance of a
  false block at ``delta`` and the items ``delta`` would need.
- lower-is-better metrics (``perplexity``): ``must_pass`` is a ceiling; ``general`` bootstraps
  the token-weighted NLL difference and needs the upper CI bound of candidate / champion
  perplexity below ``1 + max_increase``.
- ``target``: mean gain >= ``min_gain`` and lower CI bound > 0.
- No champion: when the report scored the base model (role ``base``: a first fine-tune),
  general and target suites compare the candidate with it as they would with a champion;
  otherwise only floors apply and general and target suites are reported "no champion".
- ``must_pass`` suites with a champion (or base) also report the paired difference and its
  CI, so a decision says how far the candidate moved, not only that it cleared the floor.

Anything the policy needs but the report lacks rejects, with the reason; a report that is
not an evaluation report at all raises ``ReportError``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneloop.gating.policy import GatePolicy, SuitePolicy
from tuneloop.gating.stats import (
    false_block_chance,
    mcnemar_exact_p,
    paired_bootstrap_ci,
    paired_bootstrap_ratio_ci,
    reliable_margin,
)

# The per-item value behind each suite metric in evaluation.json (perplexity: per-item
# NLL per token, shown in the report; the gate weighs items by their tokens).
ITEM_FIELDS = {"acc": "score", "acc_norm": "score_norm", "perplexity": "nll_per_token"}


class ReportError(ValueError):
    """The evaluation report is not in the shape of docs/contracts.md."""


@dataclass
class Comparison:
    suite: str
    role: str
    metric: str
    candidate: float | None = None
    champion: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    threshold: float | None = None
    passed: bool = False
    reason: str = ""
    mcnemar_p: float | None = None
    # General suites on 0/1-like scores: how reliable the margin is (see module docstring).
    delta: float | None = None  # configured
    margin: float | None = None  # used: delta, or widened
    false_block_risk: float | None = None  # chance an equal candidate is blocked at delta
    min_items: int | None = None  # items for which delta keeps that below max_false_block
    discordance: float | None = None  # share of 0/1 items the two models disagree on
    lower_is_better: bool = False
    reference: str = "champion"  # what ``champion`` holds: "champion" or "base model"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "suite": self.suite,
            "role": self.role,
            "metric": self.metric,
            "candidate": self.candidate,
            "champion": self.champion,
            "diff": self.diff,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "threshold": self.threshold,
            "passed": self.passed,
            "reason": self.reason,
        }
        if self.mcnemar_p is not None:
            out["mcnemar_p"] = self.mcnemar_p
        for name in ("delta", "margin", "false_block_risk", "min_items", "discordance"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.lower_is_better:
            out["lower_is_better"] = True
        if self.reference != "champion":
            out["reference"] = self.reference
        return out


@dataclass
class GateDecision:
    approved: bool
    reasons: list[str]
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def summary(self) -> str:
        failed = [c.reason for c in self.comparisons if not c.passed]
        if self.approved:
            return f"approved: {len(self.comparisons)} checks passed"
        problems = failed or self.reasons
        return "rejected: " + "; ".join(problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "reasons": list(self.reasons),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def decide(
    report: Mapping[str, Any], policy: GatePolicy, *, expect_champion: bool = False
) -> GateDecision:
    """Approve or reject the candidate in ``report`` under ``policy``.

    ``expect_champion``: the run has a champion, so a report without champion results is a
    broken evaluation, not a first model — reject rather than skip the comparisons.
    """
    candidate, champion, reference = _results(report, expect_champion)
    reasons: list[str] = []
    blocked = False
    if champion is None and expect_champion:
        blocked = True
        reasons.append(
            "a champion exists but the evaluation report has no champion results, "
            "so the candidate cannot be compared with it"
        )
    comparisons = [
        _compare(suite, candidate, None if blocked else champion, policy, reference)
        for suite in policy.suites
    ]
    if blocked:
        for comparison in comparisons:
            if comparison.role != "must_pass":
                comparison.passed = False
                comparison.reason = f"{comparison.suite}: not compared (champion results missing)"
    reasons.extend(c.reason for c in comparisons)
    policed = {suite.name for suite in policy.suites}
    for suite in sorted(set(candidate) - policed):
        reasons.append(f"{suite}: evaluated but not in the gate policy (not gated)")
    approved = not blocked and all(c.passed for c in comparisons)
    return GateDecision(approved=approved, reasons=reasons, comparisons=comparisons)


def _results(
    report: Mapping[str, Any], expect_champion: bool
) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    """Candidate results, what it is compared with (champion, or for a first model the base
    model), and that reference's name in reasons."""
    results = report.get("results") if isinstance(report, Mapping) else None
    if not isinstance(results, Mapping):
        raise ReportError("evaluation report: 'results' missing or not an object")
    candidate = results.get("candidate")
    if not isinstance(candidate, Mapping):
        raise ReportError("evaluation report: 'results.candidate' missing or not an object")
    champion = results.get("champion")
    if champion is not None and not isinstance(champion, Mapping):
        raise ReportError("evaluation report: 'results.champion' is not an object")
    if champion is not None:
        return dict(candidate), dict(champion), "champion"
    base = results.get("base")
    if expect_champion or base is None:
        return dict(candidate), None, "champion"
    if not isinstance(base, Mapping):
        raise ReportError("evaluation report: 'results.base' is not an object")
    return dict(candidate), dict(base), "base model"


def _compare(
    suite: SuitePolicy,
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    policy: GatePolicy,
    reference: str = "champion",
) -> Comparison:
    out = Comparison(suite=suite.name, role=suite.role, metric=suite.metric, reference=reference)
    name, metric = suite.name, suite.metric
    cand = candidate.get(name)
    if not isinstance(cand, Mapping):
        out.reason = f"{name}: missing from the evaluation report"
        return out
    out.candidate = _metric(cand, metric)
    if out.candidate is None:
        out.reason = f"{name}: the report has no {metric} for the candidate"
        return out
    champ = champion.get(name) if champion is not None else None
    if isinstance(champ, Mapping):
        out.champion = _metric(champ, metric)
        if out.champion is not None:
            out.diff = out.candidate - out.champion

    if suite.lower_is_better:
        return _compare_lower(suite, cand, champion, champ, policy, out)
    if suite.role == "must_pass":
        assert suite.floor is not None
        out.threshold = suite.floor
        out.passed = out.candidate >= suite.floor
        verdict = "meets" if out.passed else "is below"
        out.reason = f"{name}: {metric} {out.candidate:.3f} {verdict} the floor {suite.floor:.3f}"
        if isinstance(champ, Mapping):
            pairs = _paired_values(cand, champ, metric)
            if not isinstance(pairs, str):
                out.reason += "; " + _paired_summary(out, name, *pairs, policy)
        return out

    if champion is None:
        out.passed = True
        out.reason = f"{name}: no champion, not compared ({metric} {out.candidate:.3f})"
        return out
    if not isinstance(champ, Mapping):
        out.reason = f"{name}: the champion has no results for this suite"
        return out
    pairs = _paired_values(cand, champ, metric)
    if isinstance(pairs, str):
        out.reason = f"{name}: {pairs}"
        return out
    cand_values, champ_values = pairs
    diffs = [c - h for c, h in zip(cand_values, champ_values, strict=True)]
    summary = _paired_summary(out, name, cand_values, champ_values, policy)
    assert out.diff is not None and out.ci_low is not None
    label = out.reference
    if suite.role == "general":
        assert suite.delta is not None
        margin, note = _margin(out, suite, diffs, policy.confidence)
        out.threshold = -margin
        out.passed = out.ci_low > -margin
        verdict = (
            f"not worse than the {label} beyond the tolerated {margin:.3f}"
            if out.passed
            else f"may be worse than the {label} by more than {margin:.3f}"
            f" (CI lower bound {out.ci_low:+.3f} <= {-margin:+.3f})"
        ) + note
    else:
        assert suite.min_gain is not None
        out.threshold = suite.min_gain
        out.passed = out.diff >= suite.min_gain and out.ci_low > 0
        verdict = (
            f"improves on the {label} by at least {suite.min_gain:.3f}"
            if out.passed
            else f"does not show the required gain of {suite.min_gain:.3f}"
            " with a CI lower bound above 0"
        )
    out.reason = f"{name}: {verdict}; {summary}"
    return out


def _paired_summary(
    out: Comparison,
    name: str,
    cand_values: list[float],
    champ_values: list[float],
    policy: GatePolicy,
) -> str:
    """Fill ``out``'s paired means, difference, bootstrap CI and McNemar p; describe them."""
    n = len(cand_values)
    diffs = [c - h for c, h in zip(cand_values, champ_values, strict=True)]
    out.candidate = math.fsum(cand_values) / n
    out.champion = math.fsum(champ_values) / n
    out.diff = math.fsum(diffs) / n
    # Seeded per suite: adding a suite to the policy does not change another's interval.
    rng = random.Random(f"{policy.seed}:{name}")
    out.ci_low, out.ci_high = paired_bootstrap_ci(
        diffs, policy.bootstrap_samples, policy.confidence, rng
    )
    if all(v in (0.0, 1.0) for v in cand_values + champ_values):
        better = sum(1 for c, h in zip(cand_values, champ_values, strict=True) if c > h)
        worse = sum(1 for c, h in zip(cand_values, champ_values, strict=True) if c < h)
        out.mcnemar_p = mcnemar_exact_p(better, worse)
        out.discordance = sum(1 for d in diffs if d != 0) / n
    level = f"{policy.confidence:.0%} CI [{out.ci_low:+.3f}, {out.ci_high:+.3f}]"
    return (
        f"{out.metric} {out.candidate:.3f} vs {out.reference} {out.champion:.3f} "
        f"(diff {out.diff:+.3f}, {level}, n={n})"
    )


def _margin(
    out: Comparison, suite: SuitePolicy, diffs: list[float], confidence: float
) -> tuple[float, str]:
    """The non-inferiority margin to use, and a note when it is not ``delta``."""
    assert suite.delta is not None
    cap = suite.max_delta if suite.max_delta is not None else suite.delta
    se, reliable = reliable_margin(diffs, confidence, suite.max_false_block)
    margin = min(max(suite.delta, reliable), max(cap, suite.delta))
    out.delta, out.margin = suite.delta, margin
    out.false_block_risk = false_block_chance(suite.delta, se, confidence)
    sd = se * math.sqrt(len(diffs))
    # Items at which delta alone would be reliable (same per-item spread).
    out.min_items = math.ceil(len(diffs) * (reliable / suite.delta) ** 2) if suite.delta else None
    if out.false_block_risk <= suite.max_false_block or sd == 0:
        return margin, ""
    chance = false_block_chance(margin, se, confidence)
    widened = (
        f"margin widened from {suite.delta:.3f} to {margin:.3f}" if margin > suite.delta else ""
    )
    note = (
        f" [{widened + '; ' if widened else ''}{len(diffs)} items this discordant would block an "
        f"equal candidate {out.false_block_risk:.0%} of the time at {suite.delta:.3f}"
        f" ({chance:.0%} at {margin:.3f}); {suite.delta:.3f} needs about {out.min_items} items]"
    )
    return margin, note


def _compare_lower(
    suite: SuitePolicy,
    cand: Mapping[str, Any],
    champion: dict[str, Any] | None,
    champ: Any,
    policy: GatePolicy,
    out: Comparison,
) -> Comparison:
    """Perplexity: a ceiling, or a relative tolerance on candidate / champion."""
    name, metric = suite.name, suite.metric
    out.lower_is_better = True
    assert out.candidate is not None
    if suite.role == "must_pass":
        assert suite.ceiling is not None
        out.threshold = suite.ceiling
        out.passed = out.candidate <= suite.ceiling
        verdict = "is within" if out.passed else "is above"
        out.reason = (
            f"{name}: {metric} {out.candidate:.3f} {verdict} the ceiling {suite.ceiling:.3f} "
            "(lower is better)"
        )
        return out
    if champion is None:
        out.passed = True
        out.reason = f"{name}: no champion, not compared ({metric} {out.candidate:.3f})"
        return out
    if not isinstance(champ, Mapping):
        out.reason = f"{name}: the champion has no results for this suite"
        return out
    pairs = _paired_nll(cand, champ)
    if isinstance(pairs, str):
        out.reason = f"{name}: {pairs}"
        return out
    sums, tokens = pairs
    rng = random.Random(f"{policy.seed}:{name}")
    low, high = paired_bootstrap_ratio_ci(
        sums, tokens, policy.bootstrap_samples, policy.confidence, rng
    )
    cand_nll = math.fsum(s for s, _ in sums) / math.fsum(t for t, _ in tokens)
    champ_nll = math.fsum(s for _, s in sums) / math.fsum(t for _, t in tokens)
    out.candidate, out.champion = math.exp(cand_nll), math.exp(champ_nll)
    # Relative change of perplexity: exp(NLL difference) - 1 (positive = worse).
    out.diff = math.exp(cand_nll - champ_nll) - 1
    out.ci_low, out.ci_high = math.exp(low) - 1, math.exp(high) - 1
    assert suite.max_increase is not None
    out.threshold = suite.max_increase
    out.passed = out.ci_high < suite.max_increase
    level = f"{policy.confidence:.0%} CI [{out.ci_low:+.1%}, {out.ci_high:+.1%}]"
    summary = (
        f"{metric} {out.candidate:.3f} vs {out.reference} {out.champion:.3f} "
        f"(change {out.diff:+.1%}, {level}, n={len(sums)}; lower is better)"
    )
    verdict = (
        f"perplexity not above the {out.reference}'s by more than {suite.max_increase:.1%}"
        if out.passed
        else f"perplexity may exceed the {out.reference}'s by more than {suite.max_increase:.1%}"
        f" (CI upper bound {out.ci_high:+.1%})"
    )
    out.reason = f"{name}: {verdict}; {summary}"
    return out


def _paired_nll(
    cand: Mapping[str, Any], champ: Mapping[str, Any]
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]] | str:
    """Per item (candidate, champion) summed NLL and scored tokens, in candidate order."""
    by_role: list[dict[str, tuple[float, float]]] = []
    for role, result in (("candidate", cand), ("champion", champ)):
        items = result.get("items")
        if not isinstance(items, list) or not items:
            return f"the {role} has no per-item results"
        values: dict[str, tuple[float, float]] = {}
        for item in items:
            nll = item.get("nll_sum") if isinstance(item, Mapping) else None
            count = item.get("n_tokens") if isinstance(item, Mapping) else None
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in (nll, count)
            ):
                return f"the {role}'s items lack 'nll_sum' and 'n_tokens' (needed for perplexity)"
            assert isinstance(nll, int | float) and isinstance(count, int | float)
            values[str(item.get("id"))] = (float(nll), float(count))
        by_role.append(values)
    cand_values, champ_values = by_role
    if set(cand_values) != set(champ_values):
        return "candidate and champion were scored on different items; cannot compare"
    ids = list(cand_values)
    sums = [(cand_values[i][0], champ_values[i][0]) for i in ids]
    tokens = [(cand_values[i][1], champ_values[i][1]) for i in ids]
    if any(c <= 0 or h <= 0 for c, h in tokens):
        return "an item has no scored tokens"
    return sums, tokens


def _metric(result: Mapping[str, Any], metric: str) -> float | None:
    value = result.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _paired_values(
    cand: Mapping[str, Any], champ: Mapping[str, Any], metric: str
) -> tuple[list[float], list[float]] | str:
    """Per-item values in candidate order, or a reason why items cannot be paired."""
    field_name = ITEM_FIELDS[metric]
    by_role: list[dict[str, float]] = []
    for role, result in (("candidate", cand), ("champion", champ)):
        items = result.get("items")
        if not isinstance(items, list) or not items:
            return f"the {role} has no per-item results"
        values: dict[str, float] = {}
        for item in items:
            value = item.get(field_name) if isinstance(item, Mapping) else None
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"the {role}'s items lack {field_name!r} (needed for {metric})"
            values[str(item.get("id"))] = float(value)
        if len(values) != len(items):
            return f"the {role}'s items have duplicate ids"
        by_role.append(values)
    cand_values, champ_values = by_role
    if set(cand_values) != set(champ_values):
        return (
            "candidate and champion were scored on different items "
            f"({len(cand_values)} vs {len(champ_values)}); cannot compare item by item"
        )
    ids = list(cand_values)
    return [cand_values[i] for i in ids], [champ_values[i] for i in ids]
