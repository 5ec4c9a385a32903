"""Answer quality classification, the EMF record's structure, settings and baselines."""

from __future__ import annotations

import json

import pytest

from tuneloop.watch.quality import (
    DEFAULT_REFUSAL_PATTERNS,
    NAMESPACE,
    REFUSAL_TEXT,
    AnswerQuality,
    Invocation,
    QualitySettings,
    baseline_threshold,
    classify,
    compile_patterns,
    emf_fields,
    quiet_failure_from_env,
    refusal_patterns_from_env,
)

DEFAULTS = compile_patterns(DEFAULT_REFUSAL_PATTERNS)


@pytest.mark.parametrize(
    "text",
    [
        "I can't help with that request.",
        "I cannot assist with this.",
        "I'm sorry, but that is not something I can do.",
        "As an AI language model, I have no opinions.",
        "i'm sorry but no",
        REFUSAL_TEXT,
    ],
)
def test_common_refusals_match_the_default_patterns(text: str) -> None:
    assert classify(text, "eos", DEFAULTS).refusal


@pytest.mark.parametrize(
    "text",
    ["Paris is the capital of France.", "Sorry for the delay: the answer is 4.", "AI is a field."],
)
def test_ordinary_answers_are_not_refusals(text: str) -> None:
    assert classify(text, "eos", DEFAULTS) == AnswerQuality(False, False, False)


@pytest.mark.parametrize(("text", "empty"), [("", True), (" \n\t ", True), (" a ", False)])
def test_empty_means_nothing_but_whitespace(text: str, empty: bool) -> None:
    assert classify(text, "eos", DEFAULTS).empty is empty


@pytest.mark.parametrize(
    ("reason", "truncated"), [("length", True), ("eos", False), ("stop", False)]
)
def test_truncated_means_the_token_limit_ended_the_answer(reason: str, truncated: bool) -> None:
    assert classify("some text", reason, DEFAULTS).truncated is truncated


def test_patterns_come_from_the_environment_or_default() -> None:
    custom = refusal_patterns_from_env({"TUNELOOP_REFUSAL_PATTERNS": json.dumps(["^nope"])})
    assert classify("Nope, not today", "eos", custom).refusal
    assert not classify("I can't help with that", "eos", custom).refusal
    assert [p.pattern for p in refusal_patterns_from_env({})] == list(DEFAULT_REFUSAL_PATTERNS)


@pytest.mark.parametrize(
    ("raw", "message"),
    [("[not json", "not JSON"), ('{"a": 1}', "JSON list"), ('["(unclosed"]', "pattern 0")],
)
def test_bad_pattern_variables_are_clear_errors(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        refusal_patterns_from_env({"TUNELOOP_REFUSAL_PATTERNS": raw})


def test_quiet_failure_switch_accepts_only_its_modes() -> None:
    assert quiet_failure_from_env({}) is None
    assert quiet_failure_from_env({"TUNELOOP_QUIET_FAILURE": "refuse"}) == "refuse"
    with pytest.raises(ValueError, match="empty, refuse, truncate"):
        quiet_failure_from_env({"TUNELOOP_QUIET_FAILURE": "explode"})


def test_emf_record_follows_the_cloudwatch_specification() -> None:
    # Given an answer that hit its limit
    invocation = Invocation(
        status=200,
        latency_ms=123.456,
        output_tokens=64,
        tokens_per_s=518.4,
        finish_reason="length",
        quality=AnswerQuality(empty=False, truncated=True, refusal=False),
    )
    # When its EMF members are built
    fields = emf_fields(invocation, endpoint_name="ep", model_version="v2", timestamp_ms=1_700)
    # Then _aws names the namespace, both dimension sets and every metric, and each metric and
    # dimension is a root member (CloudWatch's embedded metric format specification)
    directive = fields["_aws"]
    assert directive["Timestamp"] == 1_700
    (metrics,) = directive["CloudWatchMetrics"]
    assert metrics["Namespace"] == NAMESPACE == "TuneLoop/Endpoint"
    assert metrics["Dimensions"] == [["EndpointName"], ["EndpointName", "ModelVersion"]]
    names = [m["Name"] for m in metrics["Metrics"]]
    assert names == [
        "Invocations",
        "Errors",
        "Latency",
        "OutputTokens",
        "TokensPerSecond",
        "EmptyAnswer",
        "Truncated",
        "Refusal",
    ]
    assert all(isinstance(fields[name], int | float) for name in names)
    for dimension_set in metrics["Dimensions"]:
        assert all(isinstance(fields[d], str) for d in dimension_set)
    assert {m["Name"]: m["Unit"] for m in metrics["Metrics"]}["Latency"] == "Milliseconds"
    assert (fields["Truncated"], fields["EmptyAnswer"], fields["Latency"]) == (1, 0, 123.5)
    assert fields["StopReason"] == "length" and "StopReason" not in names
    assert len(metrics["Metrics"]) <= 100  # the specification's limit per directive


def test_a_failed_request_reports_an_error_and_no_quality_flags() -> None:
    fields = emf_fields(
        Invocation(status=500, latency_ms=3.0),
        endpoint_name="ep",
        model_version="v",
        timestamp_ms=1,
    )
    names = [m["Name"] for m in fields["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == ["Invocations", "Errors", "Latency"] and fields["Errors"] == 1
    assert "EmptyAnswer" not in fields


def test_settings_validate_every_field() -> None:
    assert QualitySettings().problems() == []
    bad = QualitySettings(
        refusal_patterns=("(",),
        capture_sampling_percentage=101,
        capture_retention_days=0,
        window_minutes=0,
        max_empty_rate=0.0,
        max_refusal_rate=1.5,
        baseline_factor=0.5,
    )
    fields = [field for field, _ in bad.problems()]
    assert fields == [
        "refusal_patterns",
        "capture_sampling_percentage",
        "capture_retention_days",
        "window_minutes",
        "max_empty_rate",
        "max_refusal_rate",
        "baseline_factor",
    ]


@pytest.mark.parametrize(
    ("absolute", "baseline", "factor", "expected"),
    [(0.2, None, 2.0, 0.2), (0.2, 0.05, 2.0, 0.2), (0.2, 0.3, 2.0, 0.6), (0.2, 0.8, 2.0, 1.0)],
)
def test_baseline_raises_the_bound_only_above_the_absolute_one(
    absolute: float, baseline: float | None, factor: float, expected: float
) -> None:
    assert baseline_threshold(absolute, baseline, factor) == pytest.approx(expected)
