"""Read models of data and benchmarks: drops, records over time, alarms, benchmark suites and
their score history. Drops and records over time read indexes and counters, not Scans, so
their cost follows what is shown; only ``drop_detail`` reads S3."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tuneloop import aws
from tuneloop.ingest.drops import DAY_COUNTER_PREFIX, day_counter_key
from tuneloop.month_index import newest_first
from tuneloop.operations.names import PlatformNames
from tuneloop.operations.views_common import num, plain, to_dict

COUNTS = ("received", "stored", "duplicate", "near_duplicate", "quarantined")


@dataclass(frozen=True)
class DropSummary:
    drop_id: str
    key: str
    dataset: str
    status: str
    received: int | None = None
    stored: int | None = None
    duplicate: int | None = None
    near_duplicate: int | None = None
    quarantined: int | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    started_at: str = ""
    completed_at: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


@dataclass(frozen=True)
class DropDetail:
    drop: DropSummary
    bucket: str = ""
    redactions: dict[str, int] = field(default_factory=dict)
    near_duplicates: tuple[dict[str, Any], ...] = ()
    quarantine_uri: str = ""
    rejected_sample: tuple[dict[str, Any], ...] = ()  # {file, line, reason, field, message, raw}
    segments: int | None = None
    segments_done: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    reason: str = ""
    updated_at: str = ""
    metric: str = ""
    threshold: float | None = None


@dataclass(frozen=True)
class BenchmarkVersionView:
    version: str
    item_count: int
    tags: dict[str, int] = field(default_factory=dict)
    created_at: str = ""
    s3_uri: str = ""


@dataclass(frozen=True)
class BenchmarkSuite:
    name: str
    kind: str
    versions: tuple[BenchmarkVersionView, ...]  # newest first

    @property
    def latest(self) -> BenchmarkVersionView:
        return self.versions[0]


@dataclass(frozen=True)
class ScorePoint:
    model_version: str
    created_at: str
    metric: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    benchmark_version: str = ""
    status: str = ""


def _count(item: Mapping[str, Any], name: str) -> int | None:
    value = num(item.get(name))
    return None if value is None else int(value)


def _summary(item: Mapping[str, Any]) -> DropSummary:
    return DropSummary(
        drop_id=str(item["drop_id"]),
        key=str(item.get("key", "")),
        dataset=str(item.get("dataset", "")),
        status=str(item.get("status", "")),
        **{name: _count(item, name) for name in COUNTS},
        reasons={str(k): int(v) for k, v in dict(item.get("reasons") or {}).items()},
        started_at=str(item.get("started_at", "")),
        completed_at=str(item.get("completed_at", "")),
        source=str(item.get("source", "")),
    )


def list_drops(names: PlatformNames, *, limit: int = 50) -> list[DropSummary]:
    """The newest ``limit`` drops, newest first (Queries of Drops' ``by_month`` index; a
    projection would not lower the read units, which count whole items)."""
    items = newest_first(names.drops_table, "started_month", limit=limit)
    return [_summary(plain(item)) for item in items]


def drop_detail(names: PlatformNames, drop_id: str, *, sample: int = 5) -> DropDetail:
    """One drop (its id, a unique 8+ character prefix or its key), with rejected lines."""
    from tuneloop.data_cli.inspect import find_drop, quarantine_sample

    item = plain(find_drop(names.drops_table, drop_id))
    uri = str(item.get("quarantine_uri") or "")
    rejected = quarantine_sample(uri, sample) if uri and sample else []
    return DropDetail(
        drop=_summary(item),
        bucket=str(item.get("bucket", "")),
        redactions={str(k): int(v) for k, v in dict(item.get("redactions") or {}).items()},
        near_duplicates=tuple(dict(n) for n in item.get("near_duplicates") or ()),
        quarantine_uri=uri,
        rejected_sample=tuple(plain(r) for r in rejected),
        segments=_count(item, "segments"),
        segments_done=_count(item, "segments_done"),
    )


def records_over_time(
    names: PlatformNames, *, days: int = 90, today: date | None = None
) -> list[tuple[str, int]]:
    """(UTC day, records stored that day) for the last ``days`` days that stored any, from
    the Control table's day counters (one BatchGetItem; at most 100 keys)."""
    last = today or datetime.now(UTC).date()
    wanted = [(last - timedelta(days=back)).isoformat() for back in range(min(days, 100))]
    keys = [{"key": {"S": day_counter_key(day)}} for day in wanted]
    client = aws.dynamodb()
    request: dict[str, Any] = {
        names.control_table: {"Keys": keys, "ProjectionExpression": "#key, #stored",
                              "ExpressionAttributeNames": {"#key": "key", "#stored": "stored"}}
    }  # fmt: skip
    per_day: dict[str, int] = {}
    while request:
        response = client.batch_get_item(RequestItems=request)
        for item in response.get("Responses", {}).get(names.control_table, []):
            stored = int(item.get("stored", {}).get("N", "0"))
            if stored:
                per_day[item["key"]["S"].removeprefix(DAY_COUNTER_PREFIX)] = stored
        request = response.get("UnprocessedKeys") or {}
    return sorted(per_day.items())


def alarm_states(names: PlatformNames) -> list[AlarmState]:
    """The stage's alarms: those on its endpoint and those its stacks created."""
    cloudwatch = aws.client("cloudwatch")
    prefix = f"TuneLoop-{names.stage}-"
    found = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        for alarm in page.get("MetricAlarms", []):
            dimensions = {d.get("Name"): d.get("Value") for d in alarm.get("Dimensions", [])}
            ours = str(alarm.get("AlarmName", "")).startswith(prefix) or (
                bool(names.endpoint_name) and dimensions.get("EndpointName") == names.endpoint_name
            )
            if not ours:
                continue
            found.append(
                AlarmState(
                    name=str(alarm["AlarmName"]),
                    state=str(alarm.get("StateValue", "")),
                    reason=str(alarm.get("StateReason", "")),
                    updated_at=str(alarm.get("StateUpdatedTimestamp", "")),
                    metric=str(alarm.get("MetricName", "")),
                    threshold=num(alarm.get("Threshold")),
                )
            )
    return sorted(found, key=lambda a: (a.state != "ALARM", a.name))


def benchmark_suites(names: PlatformNames) -> list[BenchmarkSuite]:
    """Every stored benchmark, its versions newest first (one Scan of Benchmarks)."""
    from tuneloop.benchmarks.store import BenchmarkStore

    store = BenchmarkStore(table=names.benchmarks_table, bucket=names.artifacts_bucket)
    by_name: dict[str, list[Any]] = {}
    for version in store.all_versions():
        by_name.setdefault(version.name, []).append(version)
    suites = []
    for name, versions in sorted(by_name.items()):
        versions.sort(key=lambda v: (v.created_at, v.version), reverse=True)
        suites.append(
            BenchmarkSuite(
                name=name,
                kind=versions[0].kind,
                versions=tuple(
                    BenchmarkVersionView(
                        version=v.version,
                        item_count=v.item_count,
                        tags=dict(v.tags),
                        created_at=v.created_at,
                        s3_uri=v.s3_uri,
                    )
                    for v in versions
                ),
            )
        )
    return suites


def benchmark_history(
    names: PlatformNames, suite: str, items: list[dict[str, Any]] | None = None
) -> list[ScorePoint]:
    """``suite``'s score (with its CI) for each of the newest versions scored on it, oldest
    first (from the scores the gate stores on the version items: ``summary_items``)."""
    from tuneloop.benchmarks.runs import runs_of
    from tuneloop.operations.views import scores_of, summary_items

    points = []
    for item in items if items is not None else summary_items(names):
        version, created = str(item["model_version"]), str(item.get("created_at", ""))
        for score in scores_of(item):
            if score.suite != suite:
                continue
            points.append(
                ScorePoint(
                    model_version=version,
                    created_at=created,
                    metric=score.metric,
                    value=score.value,
                    ci_low=score.ci_low,
                    ci_high=score.ci_high,
                    benchmark_version=score.benchmark_version,
                    status=str(item.get("status", "")),
                )
            )
        for run in runs_of(item):  # a person's or the schedule's run of this suite
            if run.get("suite") != suite:
                continue
            kind = "scheduled run" if run.get("trigger") == "scheduled" else "benchmark run"
            points.append(
                ScorePoint(
                    model_version=version,
                    created_at=created,
                    metric=str(run.get("metric", "")),
                    value=num(run.get("value")),
                    ci_low=num(run.get("ci_low")),
                    ci_high=num(run.get("ci_high")),
                    benchmark_version=str(run.get("version", "")),
                    status=f"{kind} {str(run.get('at', ''))[:16]}",
                )
            )
    return sorted(points, key=lambda p: (p.created_at, p.model_version, p.status))


@dataclass(frozen=True)
class BenchmarkRunView:
    name: str
    status: str  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    started_at: str
    stopped_at: str = ""


def benchmark_runs(names: PlatformNames, *, limit: int = 10) -> list[BenchmarkRunView]:
    """The newest benchmark runs (executions of the benchmark run state machine)."""
    if not names.benchmark_run_state_machine_arn:
        return []
    page = aws.stepfunctions().list_executions(
        stateMachineArn=names.benchmark_run_state_machine_arn, maxResults=limit
    )
    return [
        BenchmarkRunView(
            name=str(e["name"]),
            status=str(e["status"]),
            started_at=str(e.get("startDate", "")),
            stopped_at=str(e.get("stopDate", "") or ""),
        )
        for e in page.get("executions", [])
    ]
