"""Continuous evaluation: the production version re-scored on the gate's suites, on a schedule.

The ContinuousEvaluation function (an EventBridge Scheduler schedule, daily by default, or
``tuneloop watch evaluate``) calls :func:`start_scheduled_runs`: it finds the version in
production, the gate policy in force and, for every suite the policy names, the suite's
latest benchmark version, and starts one benchmark run per suite tagged ``scheduled`` and
carrying the suite's :class:`Baseline` (its gate-time score and the gate's margin). The
benchmark run's Record step (:mod:`tuneloop.benchmarks.runs`) compares the new score with
the baseline (:func:`check_regression`), keeps the result on the run's entry and publishes
``TuneLoop/Evaluation`` metrics (:func:`publish`); an alarm on ``Regression`` notifies.

A regression is a drop beyond the gate's margin: the suite's ``delta`` (general suites),
its relative ``max_increase`` (perplexity), or the stage's ``margin_without_delta`` for
suites whose gate role has no margin (must-pass, target); a must-pass score below its floor
(above its ceiling) is one too. When the benchmark version differs from the gate's, the
check says it crosses versions: the two scores are on different items (docs/monitoring.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.benchmarks.store import LATEST, BenchmarkStore
from tuneloop.gating.policy import GatePolicy, SuitePolicy
from tuneloop.release.control import production_key, read_production
from tuneloop.release.model_versions import get_version

NAMESPACE = "TuneLoop/Evaluation"
SCHEDULED = "scheduled"
"""The ``trigger`` of a benchmark run started by continuous evaluation."""
DEFAULT_SCHEDULE = "rate(1 day)"
DEFAULT_MARGIN_WITHOUT_DELTA = 0.05
BUILT_IN_SUITE = "mmlu"  # versioned by its package: no stored versions to resolve
HELDOUT_SUITE = "heldout_perplexity"  # the version's own held-out slice, scored at gate time
SCHEDULE_EXPRESSION = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\))$")
"""A recurring EventBridge Scheduler expression (the watch checks' ``schedule`` settings)."""
_NAME_UNSAFE = re.compile(r"[^0-9A-Za-z_-]")
MAX_EXECUTION_NAME = 80  # Step Functions' limit
_NAME_DIGEST = 10  # hex characters of the (version, suite) digest in a shortened name
_EXACTLY_AT_MARGIN = 1e-9  # a drop equal to the margin is within it, despite float rounding


class EvaluationError(ValueError):
    """A scheduled evaluation's input is malformed; the message names the field."""


@dataclass(frozen=True, kw_only=True)
class ContinuousEvaluationSettings:
    """The stage's continuous evaluation (``StageConfig.continuous_evaluation``)."""

    enabled: bool = True
    schedule: str = DEFAULT_SCHEDULE
    """EventBridge Scheduler expression: ``rate(1 day)`` or ``cron(0 6 * * ? *)``."""
    margin_without_delta: float = DEFAULT_MARGIN_WITHOUT_DELTA
    """The tolerated drop of a suite whose gate role has no margin (must-pass, target)."""

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if not isinstance(self.enabled, bool):
            found.append(("enabled", f"must be a bool, got {self.enabled!r}"))
        if not isinstance(self.schedule, str) or not SCHEDULE_EXPRESSION.match(self.schedule):
            found.append(
                (
                    "schedule",
                    "must be an EventBridge Scheduler expression such as 'rate(1 day)' or "
                    f"'cron(0 6 * * ? *)', got {self.schedule!r}",
                )
            )
        margin = self.margin_without_delta
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin <= 1:
            found.append(("margin_without_delta", f"must be in [0, 1], got {margin!r}"))
        return found


@dataclass(frozen=True)
class Baseline:
    """What a suite's scheduled score is compared with: the version's gate-time score."""

    suite: str
    metric: str
    role: str
    margin: float  # tolerated drop (relative increase when lower_is_better)
    lower_is_better: bool = False
    floor: float | None = None  # must-pass floor (ceiling when lower_is_better)
    gate_value: float | None = None  # None: the version was gated without this suite
    gate_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Baseline:
        try:
            return cls(
                suite=str(raw["suite"]),
                metric=str(raw["metric"]),
                role=str(raw["role"]),
                margin=float(raw["margin"]),
                lower_is_better=bool(raw.get("lower_is_better", False)),
                floor=_float(raw.get("floor")),
                gate_value=_float(raw.get("gate_value")),
                gate_version=str(raw.get("gate_version") or ""),
            )
        except KeyError as exc:
            raise EvaluationError(f"baseline: {exc.args[0]!r} is missing") from exc
        except (TypeError, ValueError) as exc:
            raise EvaluationError(f"baseline: {exc}") from exc


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    return float(value)


def gate_scores(item: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The ``scores`` the gate stored on a version item (JSON text, or a map on old items)."""
    raw = item.get("scores") or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, Mapping)}


def baseline_of(
    suite: SuitePolicy, gate_score: Mapping[str, Any] | None, *, margin_without_delta: float
) -> Baseline:
    """``suite``'s baseline: the gate's margin for it and its gate-time score (if any)."""
    if suite.role == "general":
        margin = suite.max_increase if suite.lower_is_better else suite.delta
    else:
        margin = None
    floor = suite.ceiling if suite.lower_is_better else suite.floor
    score = gate_score or {}
    # The gate stores the policy's metric; a score on another metric cannot be compared.
    same_metric = score.get("metric") == suite.metric
    return Baseline(
        suite=suite.name,
        metric=suite.metric,
        role=suite.role,
        margin=float(margin if margin is not None else margin_without_delta),
        lower_is_better=suite.lower_is_better,
        floor=floor if suite.role == "must_pass" else None,
        gate_value=_float(score.get("value")) if same_metric else None,
        gate_version=str(score.get("version") or ""),
    )


@dataclass(frozen=True)
class RegressionCheck:
    """One scheduled score against its baseline; ``regression`` raises the alarm."""

    suite: str
    metric: str
    value: float | None
    gate_value: float | None
    delta: float | None  # value - gate_value, in the metric's own units
    margin: float
    regression: bool
    crosses_versions: bool
    version: str
    gate_version: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_regression(baseline: Baseline, value: float | None, version: str) -> RegressionCheck:
    """Whether ``value`` (the suite at benchmark ``version``) regressed from the gate."""
    crosses = baseline.gate_version != version
    gate = baseline.gate_value
    delta = None if value is None or gate is None else value - gate
    reasons: list[str] = []
    regression = False
    if value is None:
        reasons.append(f"the run reports no {baseline.metric}: nothing to compare")
    elif baseline.floor is not None and (
        value > baseline.floor if baseline.lower_is_better else value < baseline.floor
    ):
        regression = True
        bound = "ceiling" if baseline.lower_is_better else "floor"
        reasons.append(f"{baseline.metric} {value:.4f} is past the gate's {bound} {baseline.floor}")
    if value is not None and gate is None:
        reasons.append("no gate-time score for this suite: no drop to measure")
    elif value is not None and gate is not None:
        if baseline.lower_is_better:
            change = value / gate - 1 if gate > 0 else 0.0
            worse = change > baseline.margin + _EXACTLY_AT_MARGIN
            text = f"{baseline.metric} {gate:.4f} → {value:.4f} ({change:+.1%}"
            text += f", tolerated +{baseline.margin:.1%})"
        else:
            worse = value - gate < -baseline.margin - _EXACTLY_AT_MARGIN
            text = f"{baseline.metric} {gate:.4f} → {value:.4f} ({value - gate:+.4f}"
            text += f", tolerated -{baseline.margin})"
        regression = regression or worse
        reasons.append(
            ("dropped beyond the gate's margin: " if worse else "within margin: ") + text
        )
    if crosses and value is not None:
        reasons.append(
            f"crosses benchmark versions (gate {baseline.gate_version or 'unknown'}, now "
            f"{version or 'unknown'}): different items, so not a paired comparison"
        )
    return RegressionCheck(
        suite=baseline.suite,
        metric=baseline.metric,
        value=value,
        gate_value=gate,
        delta=delta,
        margin=baseline.margin,
        regression=regression,
        crosses_versions=crosses,
        version=version,
        gate_version=baseline.gate_version,
        reason="; ".join(reasons),
    )


def metric_data(
    check: RegressionCheck, model_version: str, model_line: str = ""
) -> list[dict[str, Any]]:
    """``ScoreDelta`` (per suite and version) and ``Regression`` (0/1, the alarm's metric);
    a line's run also puts ``Regression`` per ``ModelLine``, which says whose drop the
    alarm (on the metric without dimensions) fired for."""
    now = datetime.now(UTC)
    data: list[dict[str, Any]] = [
        {"MetricName": "Regression", "Value": float(check.regression), "Timestamp": now}
    ]
    if model_line:
        data.append(
            {
                "MetricName": "Regression",
                "Value": float(check.regression),
                "Timestamp": now,
                "Dimensions": [{"Name": "ModelLine", "Value": model_line}],
            }
        )
    if check.delta is not None:
        data.append(
            {
                "MetricName": "ScoreDelta",
                "Value": check.delta,
                "Timestamp": now,
                "Dimensions": [
                    {"Name": "Suite", "Value": check.suite},
                    {"Name": "ModelVersion", "Value": model_version},
                ],
            }
        )
    return data


def publish(check: RegressionCheck, model_version: str, model_line: str = "") -> None:
    aws.client("cloudwatch").put_metric_data(
        Namespace=NAMESPACE, MetricData=metric_data(check, model_version, model_line)
    )


@dataclass(frozen=True)
class ScheduledRun:
    suite: str
    version: str
    execution_name: str = ""
    execution_arn: str = ""
    note: str = ""  # why it was not started, or that a retry found it started


@dataclass(frozen=True)
class EvaluationStart:
    model_version: str
    runs: tuple[ScheduledRun, ...]
    note: str = ""
    model_line: str = ""  # "": the endpoint's one model

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "model_version": self.model_version,
            "runs": [asdict(run) for run in self.runs],
            "note": self.note,
        }
        return {"model_line": self.model_line, **found} if self.model_line else found


def scheduled_time(event: Mapping[str, Any]) -> datetime:
    """The schedule's time (``<aws.scheduler.scheduled-time>``): one run per suite per time."""
    raw = event.get("scheduled_time")
    if not isinstance(raw, str) or not raw:
        raise EvaluationError("continuous evaluation input: 'scheduled_time' is missing")
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EvaluationError(
            f"continuous evaluation input: scheduled_time {raw!r} is not ISO-8601"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def schedule_input(when: datetime | None = None) -> dict[str, str]:
    """What the schedule sends (``tuneloop watch evaluate`` sends it with the time now)."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return {"trigger": SCHEDULED, "scheduled_time": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}


def execution_name(when: datetime, model_version: str, suite: str) -> str:
    """Unique per schedule time, version and suite, so a retried invocation starts nothing new.

    Whole when it fits Step Functions' 80 characters. A longer one (a line's version ends
    with its name: ``v0007-20261207-150000-support``) keeps the heads of both and a digest
    of the whole pair, as two cut names could otherwise meet."""
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    whole = _NAME_UNSAFE.sub("-", f"ce-{stamp}-{model_version}-{suite}")
    if len(whole) <= MAX_EXECUTION_NAME:
        return whole
    digest = hashlib.sha256(f"{model_version}\0{suite}".encode()).hexdigest()[:_NAME_DIGEST]
    head = f"ce-{stamp}-{model_version[:25]}-{suite[:24]}"
    return _NAME_UNSAFE.sub("-", f"{head}-{digest}")


def start_scheduled_runs(
    when: datetime,
    *,
    control_table: str,
    model_versions_table: str,
    store: BenchmarkStore,
    state_machine_arn: str,
    policy: GatePolicy,
    margin_without_delta: float,
    model_line: str = "",
) -> EvaluationStart:
    """One benchmark run per suite of ``policy`` on the version in production (of
    ``model_line``: its Control item ``production#<line>``, with the line's policy)."""
    production = read_production(control_table, production_key(model_line))
    if production is None:
        where = f"of model line {model_line} " if model_line else ""
        note = f"nothing {where}is in production: nothing to evaluate"
        return EvaluationStart("", (), note=note, model_line=model_line)
    model_version = production.current.model_version
    item = get_version(model_versions_table, model_version) or {}
    scores = gate_scores(item)
    runs = []
    for suite in policy.suites:
        baseline = baseline_of(
            suite, scores.get(suite.name), margin_without_delta=margin_without_delta
        )
        runs.append(
            _start_one(
                when,
                model_version,
                baseline,
                store=store,
                arn=state_machine_arn,
                model_line=model_line,
            )
        )
    return EvaluationStart(model_version, tuple(runs), model_line=model_line)


def _start_one(
    when: datetime,
    model_version: str,
    baseline: Baseline,
    *,
    store: BenchmarkStore,
    arn: str,
    model_line: str,
) -> ScheduledRun:
    suite = baseline.suite
    if suite == HELDOUT_SUITE:
        note = "the held-out slice belongs to the version's own dataset: scored at gate time only"
        return ScheduledRun(suite, "", note=note)
    version = LATEST
    if suite != BUILT_IN_SUITE:
        stored = store.versions(suite)  # newest first; none: a hand-uploaded file (Prepare)
        version = stored[0].version if stored else LATEST
    name = execution_name(when, model_version, suite)
    request = {
        "model_version": model_version,
        "suite": suite,
        "version": version,
        "trigger": SCHEDULED,
        "baseline": baseline.to_dict(),
    }
    if model_line:  # Record keeps it on the entry and publishes Regression per line
        request["model_line"] = model_line
    try:
        started = aws.stepfunctions().start_execution(
            stateMachineArn=arn, name=name, input=json.dumps(request)
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
        return ScheduledRun(suite, version, name, note="already started for this schedule time")
    return ScheduledRun(suite, version, name, str(started["executionArn"]))
