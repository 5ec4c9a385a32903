"""The gate's rules: floors, non-inferiority, required gain, first model, statistics, policy."""

from __future__ import annotations

import json
import math
import random
import re
import time
from statistics import NormalDist
from typing import Any

import pytest

from tuneloop.gating import GatePolicy, PolicyError, ReportError, decide, parse_policy
from tuneloop.gating.stats import mcnemar_exact_p, paired_bootstrap_ci, quantile

POLICY: dict[str, Any] = {
    "suites": {
        "mmlu": {"role": "general", "metric": "acc", "delta": 0.05},
        "company_faq": {"role": "must_pass", "metric": "acc", "floor": 0.5},
    },
    "bootstrap_samples": 2000,
    "confidence": 0.95,
    "seed": 0,
}


def scores(n: int, correct: int, offset: int = 0) -> list[float]:
    """``n`` binary item scores with ``correct`` ones, starting at item ``offset``."""
    return [1.0 if (i - offset) % n < correct else 0.0 for i in range(n)]


def suite(values: list[float]) -> dict[str, Any]:
    items = [
        {"id": f"q{i}", "score": v, "score_norm": v, "prediction": 0} for i, v in enumerate(values)
    ]
    acc = sum(values) / len(values)
    return {"acc": acc, "acc_stderr": 0.0, "acc_norm": acc, "items": items}


def report(
    candidate: dict[str, list[float]], champion: dict[str, list[float]] | None
) -> dict[str, Any]:
    results: dict[str, Any] = {"candidate": {k: suite(v) for k, v in candidate.items()}}
    if champion is not None:
        results["champion"] = {k: suite(v) for k, v in champion.items()}
    benchmarks = {
        k: {"version": "0" * 64, "n_items": len(v), "kind": "multiple_choice"}
        for k, v in candidate.items()
    }
    return {"benchmarks": benchmarks, "results": results}


def policy(**changes: Any) -> GatePolicy:
    return parse_policy({**POLICY, **changes})


def comparison(decision: Any, name: str) -> Any:
    return next(c for c in decision.comparisons if c.suite == name)


def test_pass_when_equal_to_champion_and_above_floor() -> None:
    mmlu = scores(200, 80)
    decision = decide(
        report(
            {"mmlu": mmlu, "company_faq": scores(10, 8)},
            {"mmlu": mmlu, "company_faq": scores(10, 6)},
        ),
        policy(),
    )
    assert decision.approved
    general = comparison(decision, "mmlu")
    assert (general.diff, general.ci_low, general.ci_high) == (0.0, 0.0, 0.0)
    assert general.threshold == -0.05 and general.passed
    assert general.mcnemar_p == 1.0
    floor = comparison(decision, "company_faq")
    assert (floor.candidate, floor.champion, floor.threshold) == (0.8, 0.6, 0.5)
    assert decision.summary == "approved: 2 checks passed"
    as_dict = decision.to_dict()
    assert set(as_dict) == {"approved", "reasons", "comparisons"}
    assert set(as_dict["comparisons"][0]) == {
        "suite",
        "role",
        "metric",
        "candidate",
        "champion",
        "diff",
        "ci_low",
        "ci_high",
        "threshold",
        "passed",
        "reason",
        "mcnemar_p",
        "delta",
        "margin",
        "false_block_risk",
        "min_items",
        "discordance",
    }
    # Identical answers: the margin is delta, no equal candidate could be blocked.
    assert (general.delta, general.margin, general.false_block_risk) == (0.05, 0.05, 0.0)
    json.dumps(as_dict)  # serializable as is


def test_floor_failure_rejects() -> None:
    mmlu = scores(100, 50)
    decision = decide(
        report(
            {"mmlu": mmlu, "company_faq": scores(10, 4)},
            {"mmlu": mmlu, "company_faq": scores(10, 9)},
        ),
        policy(),
    )
    assert not decision.approved
    floor = comparison(decision, "company_faq")
    assert not floor.passed
    assert "0.400 is below the floor 0.500" in floor.reason
    assert comparison(decision, "mmlu").passed
    assert decision.summary.startswith("rejected: company_faq")


def test_regression_beyond_delta_is_detected() -> None:
    # Champion right on 160/200, candidate on 100/200 (every candidate hit is a champion hit).
    decision = decide(
        report(
            {"mmlu": scores(200, 100), "company_faq": scores(4, 4)},
            {"mmlu": scores(200, 160), "company_faq": scores(4, 4)},
        ),
        policy(),
    )
    assert not decision.approved
    general = comparison(decision, "mmlu")
    assert general.diff == pytest.approx(-0.3)
    assert general.ci_low < -0.05 and general.ci_high < 0
    assert general.mcnemar_p is not None and general.mcnemar_p < 1e-6
    # 200 items disagreeing on 30%: too few for 0.05, the margin widens to its 0.10 cap
    # and the 30-point drop is still caught.
    assert general.margin == 0.10 and general.discordance == pytest.approx(0.3)
    assert "may be worse than the champion by more than 0.100" in general.reason
    assert "0.050 needs about" in general.reason
    fixed = comparison(decide(report(*_drop()), policy(suites=_fixed(0.05))), "mmlu")
    assert fixed.margin == 0.05 and "by more than 0.050" in fixed.reason


def _drop() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    return {"mmlu": scores(200, 100)}, {"mmlu": scores(200, 160)}


def _fixed(delta: float) -> dict[str, Any]:
    return {"mmlu": {"role": "general", "delta": delta, "max_delta": delta}}


def test_margin_widens_for_equal_but_discordant_models_and_says_why() -> None:
    # Both right on half of 400 items, disagreeing on 200 of them (discordance 0.5).
    cand, champ = scores(400, 200), scores(400, 200, offset=100)
    decision = decide(report({"mmlu": cand}, {"mmlu": champ}), policy(suites=_fixed(0.05)))
    general = comparison(decision, "mmlu")
    assert general.diff == 0 and general.discordance == 0.5
    # With a fixed 0.05, such an equal pair is blocked most of the time: Φ(1.96 - δ/se),
    # se = sd / √n with sd ≈ √0.5 ...
    se = math.sqrt(0.5 * 400 / 399) / 20
    assert general.false_block_risk == pytest.approx(NormalDist().cdf(1.959964 - 0.05 / se), 1e-4)
    assert general.false_block_risk > 0.7 and not decision.approved
    # ... and 0.05 would need (1.96 + 1.96)^2 * 0.5 / 0.05^2 ≈ 3,100 items.
    assert 2900 < general.min_items < 3300
    adaptive = comparison(
        decide(report({"mmlu": cand}, {"mmlu": champ}), policy(suites=_mmlu(0.05))), "mmlu"
    )
    assert adaptive.margin == 0.10 and adaptive.threshold == -0.10
    assert adaptive.ci_low is not None and adaptive.ci_low > -0.10 and adaptive.passed
    assert "margin widened from 0.050 to 0.100" in adaptive.reason
    # Looser cap and fewer tolerated false blocks: the reliable margin itself.
    wide = comparison(
        decide(
            report({"mmlu": cand}, {"mmlu": champ}),
            policy(suites=_mmlu(0.05, max_delta=0.5, max_false_block=0.01)),
        ),
        "mmlu",
    )
    # (1.96 + z_0.995 = 2.576) * sd / sqrt(400), sd of the differences ≈ 0.708.
    assert wide.margin == pytest.approx(4.5359 * 0.70799 / 20, rel=1e-3)


def _mmlu(delta: float, **extra: float) -> dict[str, Any]:
    return {"mmlu": {"role": "general", "delta": delta, **extra}}


def heldout_suite(nll_per_token: list[float], tokens: list[int]) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"id": f"h{i}", "nll_per_token": nll, "nll_sum": nll * n, "n_tokens": n}
        for i, (nll, n) in enumerate(zip(nll_per_token, tokens, strict=True))
    ]
    total = sum(nll * n for nll, n in zip(nll_per_token, tokens, strict=True)) / sum(tokens)
    return {"perplexity": math.exp(total), "nll_per_token": total, "items": items}


def test_perplexity_is_lower_is_better_with_a_relative_tolerance() -> None:
    rng = random.Random(3)
    tokens = [rng.randint(20, 200) for _ in range(120)]
    champ = [rng.uniform(1.5, 3.0) for _ in tokens]
    rules = policy(
        suites={"held": {"role": "general", "metric": "perplexity", "max_increase": 0.05}}
    )

    def run(cand: list[float]) -> Any:
        rep = {
            "results": {
                "candidate": {"held": heldout_suite(cand, tokens)},
                "champion": {"held": heldout_suite(champ, tokens)},
            }
        }
        return decide(rep, rules)

    # 1% worse on every item (NLL + log 1.01): within the 5% tolerance.
    slightly = comparison(run([n + math.log(1.01) for n in champ]), "held")
    assert slightly.passed and slightly.lower_is_better
    assert slightly.diff == pytest.approx(0.01)
    assert slightly.threshold == 0.05
    assert slightly.candidate == pytest.approx(1.01 * slightly.champion)
    # Better (lower) perplexity passes; 10% worse fails, naming the bound.
    assert comparison(run([n - 0.2 for n in champ]), "held").passed
    worse = comparison(run([n + math.log(1.10) for n in champ]), "held")
    assert not worse.passed and worse.ci_high == pytest.approx(0.10, abs=1e-9)
    assert "may exceed the champion's by more than 5.0%" in worse.reason
    # Noisy per-item changes averaging 0: the interval straddles 0, within tolerance.
    noisy = comparison(run([n + rng.uniform(-0.05, 0.05) for n in champ]), "held")
    assert noisy.ci_low is not None and noisy.ci_low < 0 < noisy.ci_high < 0.05
    # A ceiling: must_pass on perplexity.
    ceiling = policy(suites={"held": {"role": "must_pass", "metric": "perplexity", "ceiling": 10}})
    rep = {"results": {"candidate": {"held": heldout_suite(champ, tokens)}}}
    assert decide(rep, ceiling).approved
    high = {"results": {"candidate": {"held": heldout_suite([3.0] * len(tokens), tokens)}}}
    assert "above the ceiling 10.000" in comparison(decide(high, ceiling), "held").reason


def test_small_drop_within_delta_passes() -> None:
    # 2 of 400 items lost: the CI of the drop stays well above -0.05.
    decision = decide(
        report(
            {"mmlu": scores(400, 298), "company_faq": scores(4, 4)},
            {"mmlu": scores(400, 300), "company_faq": scores(4, 4)},
        ),
        policy(),
    )
    general = comparison(decision, "mmlu")
    assert general.diff == pytest.approx(-0.005)
    assert -0.05 < general.ci_low < 0
    assert decision.approved


def test_required_improvement_absent_rejects_and_present_approves() -> None:
    rules = policy(suites={"domain": {"role": "target", "metric": "acc", "min_gain": 0.05}})
    same = decide(report({"domain": scores(100, 50)}, {"domain": scores(100, 50)}), rules)
    assert not same.approved
    assert "does not show the required gain of 0.050" in comparison(same, "domain").reason
    better = decide(report({"domain": scores(100, 80)}, {"domain": scores(100, 50)}), rules)
    target = comparison(better, "domain")
    assert better.approved and target.ci_low > 0 and target.diff == pytest.approx(0.3)
    # A gain that is too small, even if consistent, is not enough.
    slight = decide(report({"domain": scores(100, 53)}, {"domain": scores(100, 50)}), rules)
    assert not slight.approved


def test_first_model_only_floors_apply() -> None:
    rules = policy(suites={**POLICY["suites"], "domain": {"role": "target", "min_gain": 0.1}})
    first = decide(
        report(
            {"mmlu": scores(50, 10), "company_faq": scores(10, 9), "domain": scores(5, 1)}, None
        ),
        rules,
    )
    assert first.approved
    assert "no champion" in comparison(first, "mmlu").reason
    assert "no champion" in comparison(first, "domain").reason
    assert comparison(first, "mmlu").champion is None
    below = decide(
        report(
            {"mmlu": scores(50, 10), "company_faq": scores(10, 1), "domain": scores(5, 1)}, None
        ),
        rules,
    )
    assert not below.approved


def test_a_first_model_is_compared_with_its_base_model() -> None:
    rules = policy(suites={**POLICY["suites"], "domain": {"role": "target", "min_gain": 0.1}})
    rep = report(
        {"mmlu": scores(50, 10), "company_faq": scores(20, 18), "domain": scores(20, 15)}, None
    )
    rep["results"]["base"] = {
        k: suite(v)
        for k, v in {
            "mmlu": scores(50, 11),
            "company_faq": scores(20, 2),
            "domain": scores(20, 3),
        }.items()
    }
    decision = decide(rep, rules)
    assert decision.approved
    faq, domain, mmlu = (comparison(decision, n) for n in ("company_faq", "domain", "mmlu"))
    # must_pass: the floor decides; the paired gain over the base is reported with its CI.
    assert faq.champion == pytest.approx(0.1) and faq.diff == pytest.approx(0.8)
    assert faq.ci_low is not None and faq.ci_low > 0
    assert "vs base model 0.100" in faq.reason and "meets the floor" in faq.reason
    assert "improves on the base model" in domain.reason and domain.ci_low > 0
    assert "not worse than the base model" in mmlu.reason
    assert faq.to_dict()["reference"] == "base model"
    # With a champion expected, base results do not stand in for it.
    assert not decide(rep, rules, expect_champion=True).approved


def test_missing_champion_results_when_one_exists_rejects() -> None:
    rep = report({"mmlu": scores(50, 10), "company_faq": scores(10, 9)}, None)
    decision = decide(rep, policy(), expect_champion=True)
    assert not decision.approved
    assert any("no champion results" in reason for reason in decision.reasons)


def test_deterministic_and_seeded() -> None:
    rng = random.Random(7)
    # Fractional item scores: bootstrap means are continuous, so the seed shows in the CI.
    cand = [rng.random() for _ in range(300)]
    champ = [rng.random() for _ in range(300)]
    rep = report(
        {"mmlu": cand, "company_faq": scores(4, 4)}, {"mmlu": champ, "company_faq": scores(4, 4)}
    )
    first = decide(rep, policy()).to_dict()
    assert decide(rep, policy()).to_dict() == first
    other_seed = comparison(decide(rep, policy(seed=1)), "mmlu")
    assert other_seed.ci_low != first["comparisons"][0]["ci_low"]


def test_different_items_or_missing_suite_reject() -> None:
    rep = report(
        {"mmlu": scores(10, 5), "company_faq": scores(4, 4)},
        {"mmlu": scores(12, 5), "company_faq": scores(4, 4)},
    )
    decision = decide(rep, policy())
    assert not decision.approved
    assert "different items" in comparison(decision, "mmlu").reason
    missing = decide(report({"mmlu": scores(10, 5)}, {"mmlu": scores(10, 5)}), policy())
    assert not missing.approved
    assert "company_faq: missing from the evaluation report" in missing.reasons


def test_acc_norm_uses_per_item_score_norm() -> None:
    rules = policy(suites={"mmlu": {"role": "general", "metric": "acc_norm", "delta": 0.0}})
    rep = report({"mmlu": scores(100, 50)}, {"mmlu": scores(100, 50)})
    for item in rep["results"]["candidate"]["mmlu"]["items"]:
        item["score_norm"] = 1.0  # better by acc_norm only
    decision = decide(rep, rules)
    assert comparison(decision, "mmlu").diff == pytest.approx(0.5)
    assert decision.approved


def test_unpoliced_suites_are_reported_and_malformed_reports_raise() -> None:
    rep = report({"mmlu": scores(10, 5), "company_faq": scores(4, 4), "extra": scores(3, 1)}, None)
    assert (
        "extra: evaluated but not in the gate policy (not gated)" in decide(rep, policy()).reasons
    )
    with pytest.raises(ReportError, match="results"):
        decide({"benchmarks": {}}, policy())
    with pytest.raises(ReportError, match=r"results\.candidate"):
        decide({"results": {"champion": {}}}, policy())


# --- statistics ------------------------------------------------------------------------------


def test_mcnemar_exact() -> None:
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(3, 3) == 1.0
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact_p(5000, 5200) < 0.06  # large counts: exact integers, no overflow


def test_quantile_matches_numpy() -> None:
    np = pytest.importorskip("numpy")
    values = sorted(random.Random(1).random() for _ in range(37))
    for q in (0.0, 0.025, 0.5, 0.975, 1.0):
        assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_bootstrap_interval_covers_the_mean_and_is_fast() -> None:
    rng = random.Random(3)
    diffs = [float(rng.choice((-1, 0, 0, 1, 1))) for _ in range(1000)]
    started = time.perf_counter()
    low, high = paired_bootstrap_ci(diffs, 2000, 0.95, random.Random(0))
    elapsed = time.perf_counter() - started
    mean = sum(diffs) / len(diffs)
    assert low < mean < high
    assert high - low == pytest.approx(2 * 1.96 * 0.0245, rel=0.25)  # ~ normal-theory width
    assert elapsed < 2.0
    assert paired_bootstrap_ci([0.25] * 10, 200, 0.9, random.Random(0)) == (0.25, 0.25)


# --- policy -----------------------------------------------------------------------------------


def test_policy_parses_the_documented_example() -> None:
    parsed = parse_policy(json.dumps(POLICY))
    assert [(s.name, s.role, s.metric) for s in parsed.suites] == [
        ("mmlu", "general", "acc"),
        ("company_faq", "must_pass", "acc"),
    ]
    assert (parsed.suites[0].delta, parsed.suites[1].floor) == (0.05, 0.5)
    assert (parsed.bootstrap_samples, parsed.confidence, parsed.seed) == (2000, 0.95, 0)
    target = parse_policy({"suites": {"d": {"role": "target"}}})
    assert (target.suites[0].min_gain, target.bootstrap_samples) == (0.0, 2000)
    assert parse_policy(parsed.to_dict()) == parsed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{oops", "GATE_POLICY: not valid JSON"),
        ("[]", "GATE_POLICY: must be a JSON object"),
        ({}, "GATE_POLICY: suites: required"),
        ({"suites": {}}, "GATE_POLICY: suites: required"),
        (
            {"suites": {"m": {"role": "general"}}},
            "GATE_POLICY: suites.m.delta: required for role 'general'",
        ),
        ({"suites": {"m": {"role": "must_pass"}}}, "GATE_POLICY: suites.m.floor: required"),
        (
            {"suites": {"m": {"role": "boss", "floor": 1}}},
            "GATE_POLICY: suites.m.role: required, one of",
        ),
        (
            {"suites": {"m": {"role": "must_pass", "flor": 0.5}}},
            "GATE_POLICY: suites.m.flor: unknown field",
        ),
        (
            {"suites": {"m": {"role": "must_pass", "floor": "high"}}},
            "GATE_POLICY: suites.m.floor: must be a number",
        ),
        (
            {"suites": {"m": {"role": "must_pass", "floor": 1.5}}},
            "GATE_POLICY: suites.m.floor: a number in [0, 1]",
        ),
        (
            {"suites": {"m": {"role": "general", "delta": 0.1, "metric": "f1"}}},
            "GATE_POLICY: suites.m.metric",
        ),
        (
            {"suites": {"m": {"role": "general", "delta": 0.1, "floor": 0.2}}},
            "GATE_POLICY: suites.m.floor: unknown field for role 'general'",
        ),
        ({**POLICY, "confidence": 1.5}, "GATE_POLICY: confidence"),
        ({**POLICY, "bootstrap_samples": 5}, "GATE_POLICY: bootstrap_samples"),
        ({**POLICY, "seed": "x"}, "GATE_POLICY: seed"),
        ({**POLICY, "samples": 5}, "GATE_POLICY: samples: unknown field"),
        (
            {"suites": {"p": {"role": "target", "metric": "perplexity"}}},
            "GATE_POLICY: suites.p.role: 'target' is not available for perplexity",
        ),
        (
            {"suites": {"p": {"role": "general", "metric": "perplexity", "delta": 0.1}}},
            "GATE_POLICY: suites.p.delta: unknown field",
        ),
        (
            {"suites": {"p": {"role": "must_pass", "metric": "perplexity", "ceiling": 0.5}}},
            "GATE_POLICY: suites.p.ceiling: a perplexity",
        ),
        (
            {"suites": {"m": {"role": "general", "delta": 0.1, "max_delta": 0.05}}},
            "GATE_POLICY: suites.m.max_delta: a number in [delta, 1]",
        ),
        (
            {"suites": {"m": {"role": "general", "delta": 0.1, "max_false_block": 0}}},
            "GATE_POLICY: suites.m.max_false_block",
        ),
    ],
)
def test_policy_errors_name_the_field(raw: Any, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(raw)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(expected)


def test_a_policy_built_in_code_round_trips_through_its_json() -> None:
    # Given a policy written in code, as the stage config writes its own
    from tuneloop.gating.policy import GatePolicy as Policy
    from tuneloop.gating.policy import SuitePolicy

    policy = Policy(
        suites=(
            SuitePolicy(
                name="mmlu", role="general", delta=0.05, max_false_block=0.02, max_delta=0.08
            ),
            SuitePolicy(
                name="heldout_perplexity", role="general", metric="perplexity", max_increase=0.05
            ),
        )
    )
    # When the Gate reads its GATE_POLICY value
    parsed = parse_policy(policy.to_json())
    # Then it is the same policy, every field kept
    assert parse_policy(parsed.to_json()) == parsed
    by_name = {s.name: s for s in parsed.suites}
    assert (by_name["mmlu"].max_false_block, by_name["mmlu"].max_delta) == (0.02, 0.08)
    assert by_name["heldout_perplexity"].max_increase == 0.05


def test_a_field_the_role_does_not_take_survives_to_the_parser() -> None:
    # Given a general suite built in code with a floor (which only must_pass takes)
    from tuneloop.gating.policy import GatePolicy as Policy
    from tuneloop.gating.policy import SuitePolicy

    policy = Policy(suites=(SuitePolicy(name="m", role="general", delta=0.1, floor=0.5),))
    # When its JSON is parsed, Then the floor is rejected rather than silently dropped
    with pytest.raises(
        PolicyError, match=re.escape("suites.m.floor: unknown field for role 'general'")
    ):
        parse_policy(policy.to_json())


def test_an_unknown_field_names_the_closest_one() -> None:
    with pytest.raises(PolicyError, match=r"suites.m.flor: unknown field .*did you mean 'floor'"):
        parse_policy({"suites": {"m": {"role": "must_pass", "flor": 0.5}}})
    with pytest.raises(PolicyError, match=r"bootstrap_sample: unknown field \(did you mean"):
        parse_policy({**POLICY, "bootstrap_sample": 500})
