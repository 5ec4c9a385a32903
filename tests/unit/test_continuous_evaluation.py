"""The regression decision of continuous evaluation: margin, floors, crossing versions,
missing gate scores, and the baselines taken from the gate policy and the version's scores."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from stacks.config import ConfigError, load_stage_config
from tuneloop.gating.policy import SuitePolicy, parse_policy
from tuneloop.watch.evaluation import (
    Baseline,
    ContinuousEvaluationSettings,
    EvaluationError,
    baseline_of,
    check_regression,
    execution_name,
    gate_scores,
    metric_data,
    schedule_input,
    scheduled_time,
)

GENERAL = Baseline(
    suite="mmlu", metric="acc", role="general", margin=0.05, gate_value=0.60, gate_version="m1"
)


@pytest.mark.parametrize(
    ("value", "regression"),
    [(0.60, False), (0.56, False), (0.55, False), (0.549, True), (0.30, True), (0.70, False)],
)
def test_a_drop_counts_only_beyond_the_margin(value: float, regression: bool) -> None:
    check = check_regression(GENERAL, value, "m1")

    assert check.regression is regression
    assert check.delta == pytest.approx(value - 0.60)
    assert not check.crosses_versions
    assert ("dropped beyond" in check.reason) is regression


def test_lower_is_better_uses_the_relative_increase() -> None:
    baseline = Baseline(
        suite="heldout", metric="perplexity", role="general", margin=0.10,
        lower_is_better=True, gate_value=20.0, gate_version="h1",
    )  # fmt: skip

    assert not check_regression(baseline, 21.9, "h1").regression  # +9.5%
    worse = check_regression(baseline, 22.2, "h1")  # +11%
    assert worse.regression
    assert worse.delta == pytest.approx(2.2)
    assert not check_regression(baseline, 15.0, "h1").regression  # lower is better


def test_a_must_pass_suite_regresses_below_its_floor_even_within_the_margin() -> None:
    baseline = Baseline(
        suite="faq", metric="acc_norm", role="must_pass", margin=0.05, floor=0.5,
        gate_value=0.52, gate_version="f1",
    )  # fmt: skip

    below = check_regression(baseline, 0.49, "f1")  # a 0.03 drop, but under the floor

    assert below.regression
    assert "floor 0.5" in below.reason
    assert not check_regression(baseline, 0.50, "f1").regression


def test_a_changed_benchmark_version_is_flagged_and_still_judged() -> None:
    same = check_regression(GENERAL, 0.50, "m1")
    crossed = check_regression(GENERAL, 0.50, "m2")

    assert crossed.regression and same.regression
    assert crossed.crosses_versions and not same.crosses_versions
    assert "crosses benchmark versions (gate m1, now m2)" in crossed.reason
    assert "not a paired comparison" in crossed.reason


def test_without_a_gate_score_there_is_no_drop_to_measure() -> None:
    baseline = Baseline(suite="new_suite", metric="acc", role="general", margin=0.05)

    check = check_regression(baseline, 0.1, "n1")

    assert not check.regression
    assert check.delta is None and check.gate_value is None
    assert "no gate-time score" in check.reason
    # A floor still applies without one.
    floored = Baseline(suite="faq", metric="acc", role="must_pass", margin=0.05, floor=0.5)
    assert check_regression(floored, 0.1, "f1").regression


def test_a_run_without_the_metric_is_not_a_regression() -> None:
    check = check_regression(GENERAL, None, "m1")

    assert not check.regression
    assert "reports no acc" in check.reason


def test_baselines_take_the_gate_margin_and_the_gate_time_score() -> None:
    policy = parse_policy(
        {
            "suites": {
                "mmlu": {"role": "general", "delta": 0.05},
                "faq": {"role": "must_pass", "metric": "acc_norm", "floor": 0.5},
                "style": {"role": "target", "min_gain": 0.01},
            }
        }
    )
    item = {
        "scores": json.dumps(
            {
                "mmlu": {"metric": "acc", "value": 0.61, "version": "pkg-1"},
                "faq": {"metric": "acc_norm", "value": 0.8, "version": "abc"},
                # Scored on another metric than the policy's: not comparable.
                "style": {"metric": "acc_norm", "value": 0.4, "version": "s1"},
            }
        )
    }
    scores = gate_scores(item)
    by_name = {
        s.name: baseline_of(s, scores.get(s.name), margin_without_delta=0.03) for s in policy.suites
    }

    assert (by_name["mmlu"].margin, by_name["mmlu"].gate_value) == (0.05, 0.61)
    assert by_name["mmlu"].floor is None
    assert (by_name["faq"].margin, by_name["faq"].floor, by_name["faq"].metric) == (
        0.03,
        0.5,
        "acc_norm",
    )
    assert by_name["faq"].gate_version == "abc"
    assert by_name["style"].gate_value is None
    assert Baseline.parse(by_name["faq"].to_dict()) == by_name["faq"]


def test_a_perplexity_suite_takes_its_relative_margin_and_ceiling() -> None:
    suite = SuitePolicy(name="heldout_perplexity", role="must_pass", metric="perplexity",
                        ceiling=30.0)  # fmt: skip

    baseline = baseline_of(suite, None, margin_without_delta=0.05)

    assert baseline.lower_is_better and baseline.floor == 30.0
    assert check_regression(baseline, 31.0, "").regression


def test_metrics_carry_the_delta_per_suite_and_regression_without_dimensions() -> None:
    data = metric_data(check_regression(GENERAL, 0.5, "m1"), "v0003")

    by_name = {d["MetricName"]: d for d in data}
    assert by_name["Regression"]["Value"] == 1.0
    assert "Dimensions" not in by_name["Regression"]  # the alarm's metric
    assert by_name["ScoreDelta"]["Value"] == pytest.approx(-0.1)
    assert by_name["ScoreDelta"]["Dimensions"] == [
        {"Name": "Suite", "Value": "mmlu"},
        {"Name": "ModelVersion", "Value": "v0003"},
    ]
    no_gate = Baseline(suite="x", metric="acc", role="general", margin=0.05)
    assert [d["MetricName"] for d in metric_data(check_regression(no_gate, 0.5, ""), "v")] == [
        "Regression"
    ]


def test_the_schedule_input_round_trips_and_names_runs_per_time() -> None:
    when = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    sent = schedule_input(when)

    assert sent == {"trigger": "scheduled", "scheduled_time": "2026-12-03T06:00:00Z"}
    assert scheduled_time(sent) == when
    assert execution_name(when, "v0003", "acme support") == "ce-20261203T060000-v0003-acme-support"
    with pytest.raises(EvaluationError, match="'scheduled_time' is missing"):
        scheduled_time({"trigger": "scheduled"})
    with pytest.raises(EvaluationError, match="not ISO-8601"):
        scheduled_time({"scheduled_time": "yesterday"})
    with pytest.raises(EvaluationError, match="'margin' is missing"):
        Baseline.parse({"suite": "s", "metric": "acc", "role": "general"})


def test_the_stage_setting_is_checked_at_synth() -> None:
    assert load_stage_config("dev").continuous_evaluation.schedule == "rate(1 day)"
    bad = ContinuousEvaluationSettings(schedule="every day", margin_without_delta=2)

    assert [name for name, _ in bad.problems()] == ["schedule", "margin_without_delta"]
    with pytest.raises(ConfigError, match=r"continuous_evaluation\.schedule must be"):
        dataclasses.replace(load_stage_config("dev"), continuous_evaluation=bad)


def test_a_shortened_execution_name_stays_unique_per_version_and_suite() -> None:
    # Given two versions and two suites that agree on every character a cut would keep
    when = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    versions = (
        "v0003-20261203-050000-customer-support-emea-eu",
        "v0003-20261203-050000-customer-support-emea-us",
    )
    suites = ("customer_satisfaction_v2_a", "customer_satisfaction_v2_b")
    # When each pair gets its name
    names = {execution_name(when, version, suite) for version in versions for suite in suites}
    # Then every name is its own and within Step Functions' limit
    assert len(names) == 4
    assert all(len(name) == 80 for name in names)
