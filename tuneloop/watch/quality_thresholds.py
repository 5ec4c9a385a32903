"""Deploy's quality baselines: each quality alarm's bound for the version going live.

A bound is ``max(absolute bound, outgoing version's rate x factor)``
(``tuneloop.watch.quality.baseline_threshold``), read from the outgoing version's
``[EndpointName, ModelVersion]`` metrics (docs/monitoring.md, "Quality metrics"); for a model
line's alarms, from the line's outgoing version on its adapter component's
``[EndpointName, InferenceComponentName, ModelVersion]`` metrics. Kept apart from
``quality``, which the serving container imports without boto3.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tuneloop import aws
from tuneloop.watch.quality import (
    NAMESPACE,
    QUALITY_METRICS,
    QualitySettings,
    baseline_threshold,
)


def baseline_rate(
    cloudwatch: Any,
    *,
    endpoint_name: str,
    model_version: str,
    metric_name: str,
    since: datetime,
    until: datetime,
    inference_component: str = "",
) -> float | None:
    """The share of ``model_version``'s answers with ``metric_name`` = 1 between the two
    times (None without answers), from its per-version metric (on ``inference_component``,
    a line's adapter component, when given)."""
    seconds = max(60, int((until - since).total_seconds()) // 60 * 60)
    component = (
        [{"Name": "InferenceComponentName", "Value": inference_component}]
        if inference_component
        else []
    )
    points = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=metric_name,
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint_name},
            *component,
            {"Name": "ModelVersion", "Value": model_version},
        ],
        StartTime=since,
        EndTime=until,
        Period=seconds,
        Statistics=["Average", "SampleCount"],
    )["Datapoints"]
    answers = sum(float(p["SampleCount"]) for p in points)
    if not answers:
        return None
    return sum(float(p["Average"]) * float(p["SampleCount"]) for p in points) / answers


_ALARM_FIELDS = (
    "AlarmName",
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "ComparisonOperator",
    "TreatMissingData",
)


def set_quality_thresholds(
    *,
    endpoint_name: str,
    outgoing_version: str,
    alarm_names: Mapping[str, str],
    settings: QualitySettings,
    now: datetime | None = None,
    inference_component: str = "",
) -> dict[str, float]:
    """Deploy's step: each quality alarm's bound for the version going live is
    ``baseline_threshold(absolute, outgoing version's rate, factor)``, so a model that was
    already at a higher (accepted) rate does not roll its successor back for matching it.
    The alarm is rewritten with every other field as it is; returns kind → bound.
    ``inference_component``: the alarms are a model line's, the rates its component's."""
    if not alarm_names:
        return {}
    cloudwatch = aws.client("cloudwatch")
    until = now or datetime.now(UTC)
    since = until - timedelta(hours=settings.baseline_hours)
    alarms = {
        a["AlarmName"]: a
        for a in cloudwatch.describe_alarms(AlarmNames=list(alarm_names.values()))["MetricAlarms"]
    }
    bounds: dict[str, float] = {}
    for kind, alarm_name in alarm_names.items():
        if kind not in QUALITY_METRICS:
            raise ValueError(
                f"unknown quality alarm kind {kind!r}; expected {list(QUALITY_METRICS)}"
            )
        alarm = alarms.get(alarm_name)
        if alarm is None:
            raise ValueError(f"quality alarm {alarm_name!r} ({kind}) does not exist")
        rate = (
            baseline_rate(
                cloudwatch,
                endpoint_name=endpoint_name,
                model_version=outgoing_version,
                metric_name=QUALITY_METRICS[kind],
                since=since,
                until=until,
                inference_component=inference_component,
            )
            if outgoing_version
            else None
        )
        bound = baseline_threshold(settings.max_rate(kind), rate, settings.baseline_factor)
        bounds[kind] = bound
        if float(alarm["Threshold"]) != bound:
            fields = {k: alarm[k] for k in _ALARM_FIELDS if k in alarm}
            cloudwatch.put_metric_alarm(**fields, Threshold=bound)
    return bounds
