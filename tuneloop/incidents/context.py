"""What an incident records about the moment its alarm fired.

- the alarm's metric over ``metric_minutes_before`` the state change (and one period after);
- the version in production when it fired, and since when (and the version being deployed,
  if a deployment was under way: its changes against production are the ones shown); for
  an alarm on a model line's component, the line's production (``production#<line>``);
- what changed against last-known-good: drops and records added to its dataset,
  hyperparameters, benchmark deltas and the gate's decision (the console's comparison);
- for a pipeline failure, the newest failed version and its error.

Each part is best effort: an incident opens even when a part cannot be read, and says why.
"""

from __future__ import annotations

import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr

from tuneloop import aws
from tuneloop.incidents.record import parse_time
from tuneloop.month_index import newest_first
from tuneloop.operations.names import PlatformNames
from tuneloop.operations.views import compare_models
from tuneloop.operations.views_common import plain
from tuneloop.release import model_versions
from tuneloop.release.control import production_key, read_production
from tuneloop.release.line_rollback import line_of_alarm
from tuneloop.release.rollback import AlarmNotice

# CloudWatch's alarm messages spell statistics in capitals; its API does not.
_STATISTICS = {
    "SUM": "Sum",
    "AVERAGE": "Average",
    "MAXIMUM": "Maximum",
    "MINIMUM": "Minimum",
    "SAMPLE_COUNT": "SampleCount",
    "SAMPLECOUNT": "SampleCount",
}
_SCORE_FIELDS = ("suite", "metric", "a", "b", "diff", "ci_low", "ci_high", "paired")


def metric_of(notice: AlarmNotice) -> dict[str, Any]:
    trigger = notice.trigger
    return {
        "namespace": str(trigger.get("Namespace", "")),
        "name": str(trigger.get("MetricName", "")),
        "dimensions": dict(notice.dimensions),
        "statistic": str(trigger.get("Statistic") or trigger.get("ExtendedStatistic") or ""),
        "period_seconds": int(trigger.get("Period") or 60),
        "comparison": str(trigger.get("ComparisonOperator", "")),
        "threshold": trigger.get("Threshold"),
    }


def metric_values(notice: AlarmNotice, minutes_before: int) -> list[dict[str, Any]]:
    """The alarm's statistic, one value per period, around the state change."""
    metric = metric_of(notice)
    if not metric["namespace"] or not metric["name"]:
        return []
    period = max(60, int(metric["period_seconds"]))
    moment = parse_time(notice.state_change_time)
    statistic = metric["statistic"]
    query: dict[str, Any] = {
        "Namespace": metric["namespace"],
        "MetricName": metric["name"],
        "Dimensions": [{"Name": k, "Value": v} for k, v in metric["dimensions"].items()],
        "StartTime": moment - datetime.timedelta(minutes=minutes_before),
        "EndTime": moment + datetime.timedelta(seconds=period + 1),
        "Period": period,
    }
    if statistic.lower().startswith(("p", "tm", "wm", "tc", "ts")):
        query["ExtendedStatistics"] = [statistic]
    else:
        statistic = _STATISTICS.get(statistic.upper(), statistic)
        query["Statistics"] = [statistic]
    points = aws.client("cloudwatch").get_metric_statistics(**query)["Datapoints"]
    values = []
    for point in sorted(points, key=lambda p: p["Timestamp"]):
        value = point.get(statistic, (point.get("ExtendedStatistics") or {}).get(statistic))
        if value is not None:
            values.append({"at": point["Timestamp"].isoformat(), "value": float(value)})
    return values


def production_when_fired(
    names: PlatformNames, notice: AlarmNotice
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(production, last-known-good) as they were when the alarm fired.

    The Rollback function may have restored last-known-good already (both are subscribed
    to the alarm): its ``last_rollback`` on the production item names this alarm then."""
    line = alarm_line(names, notice)
    production = read_production(names.control_table, production_key(line))
    if production is None:
        return ({"model_line": line}, {}) if line else ({}, {})
    rollback = dict(production.item.get("last_rollback") or {})
    if rollback.get("incident") == notice.incident:
        fired, good = str(rollback.get("from_version", "")), production.current.model_version
    else:
        fired = production.current.model_version
        good = production.last_known_good.model_version if production.last_known_good else ""
    item = model_versions.get_version(names.model_versions_table, fired) or {}
    since = max((str(item.get(key, "")) for key in ("promoted_at", "restored_at")), default="")
    current = {
        "model_version": fired,
        "since": since,
        "status_now": str(item.get("status", "")),
        "endpoint_config_name": str(item.get("endpoint_config_name", "")),
        **({"model_line": line} if line else {}),
    }
    return current, ({"model_version": good} if good else {})


def alarm_line(names: PlatformNames, notice: AlarmNotice) -> str:
    """The model line whose component the alarm watches (its ``InferenceComponentName``),
    or ``""`` for the endpoint's own alarms: a line's production is its own Control item."""
    return line_of_alarm(notice, {}, names.lines().names)


def deploying_when_fired(names: PlatformNames, model_line: str = "") -> dict[str, Any]:
    """The version being deployed (of ``model_line``, for a line's alarm), if any: an alarm
    during a canary or linear shift is most likely about it, while production is still the
    version it replaces."""
    deploying = Attr("status").eq(model_versions.DEPLOYING)
    items = newest_first(
        names.model_versions_table,
        "created_month",
        limit=1,
        where=deploying & Attr("model_line").eq(model_line) if model_line else deploying,
    )
    if not items:
        return {}
    item = plain(items[0])
    return {
        "model_version": str(item.get("model_version", "")),
        "since": str(item.get("deploy_started_at", "")),
    }


def changes_since(names: PlatformNames, good: str, fired: str) -> dict[str, Any]:
    """``fired`` against ``good``: what a person asks first when a new version misbehaves."""
    comparison = compare_models(names, good, fired)
    dataset = comparison.dataset
    gate = comparison.b.gate
    return {
        "against": good,
        "record_count": [dataset.record_count_a, dataset.record_count_b],
        "drops_added": [
            {"drop_id": d.drop_id, "records": d.records, "dataset": d.dataset}
            for d in dataset.drops_added
        ],
        "drops_removed": [d.drop_id for d in dataset.drops_removed],
        "datasets": {name: list(counts) for name, counts in dataset.datasets.items()},
        "hyperparameters": [
            {"name": p.name, "a": p.a, "b": p.b} for p in comparison.hyperparameters
        ],
        "scores": [
            {name: getattr(score, name) for name in _SCORE_FIELDS} for score in comparison.scores
        ],
        "gate": (
            {"approved": gate.approved, "summary": gate.summary, "reasons": list(gate.reasons)}
            if gate
            else {}
        ),
    }


def newest_failure(names: PlatformNames) -> dict[str, Any]:
    """The newest failed version (a pipeline failure's likely subject) and its error."""
    items = newest_first(
        names.model_versions_table,
        "created_month",
        limit=1,
        where=Attr("status").eq(model_versions.FAILED),
    )
    if not items:
        return {}
    item = plain(items[0])
    return {
        "model_version": str(item.get("model_version", "")),
        "error": str(item.get("error", "")),
        "cause": str(item.get("cause", ""))[:2000],
        "failed_at": str(item.get("failed_at") or item.get("updated_at", "")),
        "execution_arn": str(item.get("execution_arn", "")),
    }


def gather(names: PlatformNames, notice: AlarmNotice, minutes_before: int) -> dict[str, Any]:
    """The incident's context fields; a part that cannot be read is named in ``gaps``."""
    fields: dict[str, Any] = {"metric": metric_of(notice)}
    gaps: dict[str, str] = {}
    try:
        fields["metric_values"] = metric_values(notice, minutes_before)
    except Exception as exc:  # an incident must open even when CloudWatch says no
        gaps["metric_values"] = str(exc)
    try:
        production, good = production_when_fired(names, notice)
        fields["production"], fields["last_known_good"] = production, good
        fired, previous = production.get("model_version"), good.get("model_version")
        deploying = deploying_when_fired(names, str(production.get("model_line") or ""))
        if deploying and deploying["model_version"] != fired:
            # The changes that matter are the candidate's against what it replaces.
            fields["deploying"] = deploying
            fired, previous = deploying["model_version"], production.get("model_version")
        if fired and previous and fired != previous:
            fields["changes"] = changes_since(names, str(previous), str(fired))
    except Exception as exc:
        gaps["production"] = str(exc)
    if fields["metric"]["namespace"] == "AWS/States":
        try:
            fields["failure"] = newest_failure(names)
        except Exception as exc:
            gaps["failure"] = str(exc)
    if gaps:
        fields["gaps"] = gaps
    return fields
