"""Per-request answer quality: empty, truncated, refusal; and the CloudWatch EMF line.

The serving container classifies every answer (:func:`classify`) and writes one
embedded-metric-format line per invocation (:func:`emf_line`) to stdout; SageMaker ships
stdout to ``/aws/sagemaker/Endpoints/<endpoint>`` and CloudWatch Logs extracts the metrics
into ``TuneLoop/Endpoint`` (docs/monitoring.md, "Quality metrics"). The local platform reads
the same lines (tuneloop/local/emf.py). A line holds sizes, timings and 0/1 flags, never the
prompt or the answer.

The stage's :class:`QualitySettings` (``StageConfig.quality``) are validated at synth by the
same code the container and the Deploy Lambda use at run time.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NAMESPACE = "TuneLoop/Endpoint"
DIMENSIONS = ("EndpointName", "ModelVersion")
# CloudWatch keeps one metric per dimension set: the endpoint's alarms watch whatever
# version serves (EndpointName), the dashboard and baselines compare versions.
DIMENSION_SETS = (["EndpointName"], ["EndpointName", "ModelVersion"])
# A model line's requests (an adapter inference component's) are also counted per component,
# so each line has its own alarms; the endpoint-wide sets above still see every request.
COMPONENT_DIMENSION_SETS = (
    ["EndpointName", "InferenceComponentName"],
    ["EndpointName", "InferenceComponentName", "ModelVersion"],
)

REFUSAL_PATTERNS_VARIABLE = "TUNELOOP_REFUSAL_PATTERNS"
ENDPOINT_NAME_VARIABLE = "TUNELOOP_ENDPOINT_NAME"
MODEL_VERSION_VARIABLE = "TUNELOOP_MODEL_VERSION"
QUIET_FAILURE_VARIABLE = "TUNELOOP_QUIET_FAILURE"
"""Test/demo switch: ``empty``, ``refuse`` or ``truncate`` makes the container fail quietly."""
QUIET_FAILURES = ("empty", "refuse", "truncate")
REFUSAL_TEXT = "I'm sorry, but I can't help with that."
"""What the ``refuse`` switch answers (matched by the default patterns)."""

DEFAULT_REFUSAL_PATTERNS = (
    r"\bI (?:can(?:no|')t|am unable to|'m unable to|won't) (?:help|assist) with\b",
    r"\bI'?m sorry,? but\b",
    r"\bI am sorry,? but\b",
    r"\bAs an AI\b",
)
"""Case-insensitive regular expressions; an answer matching any of them is a refusal."""

# Alarm names use these kinds (docs/runbooks/quality-<kind>.md).
QUALITY_METRICS = {"empty": "EmptyAnswer", "truncated": "Truncated", "refusal": "Refusal"}


@dataclass(frozen=True, kw_only=True)
class QualitySettings:
    """The stage's data capture, quality metrics and quality alarms."""

    refusal_patterns: tuple[str, ...] = DEFAULT_REFUSAL_PATTERNS
    capture_sampling_percentage: int = 100
    """Share of invocations SageMaker captures (request and response) to the data lake."""
    capture_retention_days: int = 30
    """Days captured objects are kept under ``capture/`` of the curated bucket."""
    window_minutes: int = 5
    """The alarms' period: each rate is the Average of per-answer 0/1 values over it."""
    evaluation_periods: int = 1
    max_empty_rate: float = 0.2
    max_truncated_rate: float = 0.5
    max_refusal_rate: float = 0.2
    baseline_factor: float = 2.0
    """A new version's bound is max(absolute bound, previous version's rate x factor)."""
    baseline_hours: int = 24
    """How far back Deploy reads the previous version's rates."""

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if not isinstance(self.refusal_patterns, tuple) or not all(
            isinstance(p, str) and p for p in self.refusal_patterns
        ):
            found.append(("refusal_patterns", "must be a tuple of non-empty strings"))
        else:
            try:
                compile_patterns(self.refusal_patterns)
            except ValueError as exc:
                found.append(("refusal_patterns", str(exc)))
        sampling = self.capture_sampling_percentage
        if not _is_int(sampling) or not 0 <= sampling <= 100:
            found.append(("capture_sampling_percentage", f"must be in 0..100, got {sampling!r}"))
        for name in (
            "capture_retention_days",
            "window_minutes",
            "evaluation_periods",
            "baseline_hours",
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                found.append((name, f"must be a positive integer, got {value!r}"))
        for kind in QUALITY_METRICS:
            rate = self.max_rate(kind)
            if not _is_number(rate) or not 0 < rate <= 1:
                found.append((f"max_{kind}_rate", f"must be in (0, 1], got {rate!r}"))
        factor = self.baseline_factor
        if not _is_number(factor) or factor < 1:
            found.append(("baseline_factor", f"must be a number >= 1, got {factor!r}"))
        return found

    def max_rate(self, kind: str) -> float:
        """The absolute bound of ``kind`` (``empty``, ``truncated``, ``refusal``)."""
        return float(getattr(self, f"max_{kind}_rate"))

    def refusal_patterns_json(self) -> str:
        """The value of ``TUNELOOP_REFUSAL_PATTERNS`` (a JSON list)."""
        return json.dumps(list(self.refusal_patterns))

    def to_json(self) -> str:
        """The Deploy Lambda's ``QUALITY_SETTINGS``; ``from_json`` reads it back."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> QualitySettings:
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError("expected a JSON object")
            raw["refusal_patterns"] = tuple(raw.get("refusal_patterns", DEFAULT_REFUSAL_PATTERNS))
            settings = cls(**raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"quality settings are malformed: {exc}") from exc
        problems = settings.problems()
        if problems:
            raise ValueError(
                "quality settings are invalid: "
                + "; ".join(f"{field}: {why}" for field, why in problems)
            )
        return settings


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compile_patterns(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for index, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"refusal pattern {index} ({pattern!r}) is invalid: {exc}") from exc
    return tuple(compiled)


def refusal_patterns_from_env(env: Mapping[str, str]) -> tuple[re.Pattern[str], ...]:
    """The container's patterns: ``TUNELOOP_REFUSAL_PATTERNS`` (JSON list) or the defaults."""
    raw = env.get(REFUSAL_PATTERNS_VARIABLE)
    if not raw:
        return compile_patterns(DEFAULT_REFUSAL_PATTERNS)
    try:
        patterns = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{REFUSAL_PATTERNS_VARIABLE} is not JSON: {exc}") from exc
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"{REFUSAL_PATTERNS_VARIABLE} must be a JSON list of non-empty strings")
    return compile_patterns(patterns)


def quiet_failure_from_env(env: Mapping[str, str]) -> str | None:
    mode = env.get(QUIET_FAILURE_VARIABLE) or None
    if mode is not None and mode not in QUIET_FAILURES:
        raise ValueError(
            f"{QUIET_FAILURE_VARIABLE} must be one of {', '.join(QUIET_FAILURES)}, got {mode!r}"
        )
    return mode


@dataclass(frozen=True)
class AnswerQuality:
    empty: bool
    truncated: bool
    refusal: bool


def classify(
    text: str, finish_reason: str | None, patterns: Sequence[re.Pattern[str]]
) -> AnswerQuality:
    """Empty: nothing but whitespace; truncated: generation hit ``max_new_tokens``
    (stop reason ``length``); refusal: any pattern matches."""
    return AnswerQuality(
        empty=not text.strip(),
        truncated=finish_reason == "length",
        refusal=any(pattern.search(text) for pattern in patterns),
    )


@dataclass(frozen=True)
class Invocation:
    """What one invocation's line reports (sizes, timings, flags; no text)."""

    status: int
    latency_ms: float
    output_tokens: int | None = None
    tokens_per_s: float | None = None
    finish_reason: str | None = None
    quality: AnswerQuality | None = None


def emf_fields(
    invocation: Invocation,
    *,
    endpoint_name: str,
    model_version: str,
    timestamp_ms: int,
    inference_component: str | None = None,
) -> dict[str, Any]:
    """The EMF members of one invocation's log line (CloudWatch's embedded metric format
    specification: ``_aws.Timestamp``, ``_aws.CloudWatchMetrics[{Namespace, Dimensions,
    Metrics}]``, each dimension and metric a root member). Metrics without a value (the
    quality flags of a failed request) are left out, so a rate counts answers only."""
    values: dict[str, tuple[float, str]] = {
        "Invocations": (1, "Count"),
        "Errors": (1 if invocation.status >= 500 else 0, "Count"),
        "Latency": (round(invocation.latency_ms, 1), "Milliseconds"),
    }
    if invocation.output_tokens is not None:
        values["OutputTokens"] = (invocation.output_tokens, "Count")
    if invocation.tokens_per_s is not None:
        values["TokensPerSecond"] = (invocation.tokens_per_s, "Count/Second")
    if invocation.quality is not None:
        for kind, name in QUALITY_METRICS.items():
            values[name] = (1 if getattr(invocation.quality, kind) else 0, "Count")
    fields: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [
                        list(s)
                        for s in DIMENSION_SETS
                        + (COMPONENT_DIMENSION_SETS if inference_component else ())
                    ],
                    "Metrics": [{"Name": n, "Unit": u} for n, (_, u) in values.items()],
                }
            ],
        },
        "EndpointName": endpoint_name,
        "ModelVersion": model_version,
        **{name: value for name, (value, _) in values.items()},
    }
    if inference_component:
        fields["InferenceComponentName"] = inference_component
    if invocation.finish_reason is not None:
        fields["StopReason"] = invocation.finish_reason  # a property: searchable, not a metric
    return fields


def baseline_threshold(absolute: float, baseline_rate: float | None, factor: float) -> float:
    """A new version's bound: the absolute one, raised to ``baseline x factor`` when the
    version it replaces already ran at a higher rate (capped at 1)."""
    if baseline_rate is None:
        return absolute
    return min(1.0, max(absolute, baseline_rate * factor))
