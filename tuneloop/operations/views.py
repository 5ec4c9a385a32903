"""Read models shared by the operations CLI and the console (plain frozen dataclasses).

List views read the newest items through month indexes (tuneloop/month_index.py), never a
Scan of a table that grows with history, and no S3 object (what they show is stored on the
items: a version's ``scores``, ``gate_approved`` and ``gate_summary`` are written by the gate);
detail views also read the version's S3 documents (dataset manifest, training report, gate
decision, evaluation report). Every function takes :class:`PlatformNames` first.

    production(names)                 what serves, since when, why, freeze, endpoint
    line_productions(names)           each model line's production and its component
    list_models(names)                newest first, with record counts and score summaries
    model_detail(names, version)      the whole lineage of one version
    compare_models(names, a, b)       scores with CIs and paired differences, hyperparameter
                                      and dataset differences, both loss curves
    deployment_history(names)         promotions, rollbacks and requested changes, newest first

Runs, drops, alarms and benchmarks: ``views_runs`` and ``views_data`` (re-exported here).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneloop import aws
from tuneloop.month_index import newest_first
from tuneloop.operations.freeze import FREEZE_KEY
from tuneloop.operations.names import PlatformNames
from tuneloop.operations.views_common import (
    job_output_uri,
    num,
    plain,
    read_json,
    read_tar_json,
    to_dict,
)
from tuneloop.operations.views_lines import (  # re-exported: the per-line read models
    ComponentView,
    LineProductionView,
    line_productions,
    production_by_line,
)
from tuneloop.release.control import production_key, read_production

# The per-item value behind a metric in evaluation.json (as the gate pairs them).
_ITEM_FIELDS = {"acc": "score", "acc_norm": "score_norm"}
_Z95 = 1.959964
# Version item fields list views need (no per-drop maps, no large documents).
_SUMMARY_FIELDS = (
    "model_version",
    "#status",
    "created_at",
    "updated_at",
    "record_count",
    "parent_version",
    "gate_approved",
    "gate_summary",
    "scores",
    "#error",
    "promoted_at",
    "deploy_started_at",
    "superseded_at",
    "superseded_by",
    "rolled_back_at",
    "rollback_alarm",
    "restored_at",
    "registered_at",
    "gated_at",
    "failed_at",
    "model_package_arn",
    "execution_arn",
    "drop_count",
    "model_data_url",
    "benchmark_runs",
    "model_line",
)


VERSIONS_LISTED = 50
"""How many of the newest versions list views read (``--limit`` / ``?limit=`` for more)."""


class ViewError(LookupError):
    """What was asked for does not exist; the message says what exists instead."""


# -- shapes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Score:
    """One suite's score of a version; with a champion, the gate's paired difference."""

    suite: str
    metric: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n_items: int | None = None
    benchmark_version: str = ""
    champion: float | None = None
    diff: float | None = None
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    passed: bool | None = None
    role: str = ""
    lower_is_better: bool = False


@dataclass(frozen=True)
class FreezeView:
    frozen: bool
    reason: str = ""
    by: str = ""
    at: str = ""


@dataclass(frozen=True)
class EndpointView:
    name: str
    status: str
    config_name: str = ""
    serving_version: str = ""
    failure_reason: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class ProductionView:
    version: str  # "" when nothing is in production
    since: str = ""
    why: str = ""
    deployed_by: str = ""
    gate_summary: str = ""
    scores: tuple[Score, ...] = ()
    record_count: int | None = None
    last_known_good: str = ""
    endpoint_config_name: str = ""
    endpoint: EndpointView | None = None
    freeze: FreezeView = FreezeView(frozen=False)
    last_rollback: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


@dataclass(frozen=True)
class ModelSummary:
    version: str
    status: str
    created_at: str
    record_count: int | None = None
    parent_version: str = ""
    gate_approved: bool | None = None
    gate_summary: str = ""
    scores: tuple[Score, ...] = ()
    updated_at: str = ""
    error: str = ""
    in_production: bool = False
    model_line: str = ""  # "" for the endpoint's own model (a stage without lines)

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


@dataclass(frozen=True)
class DropCount:
    drop_id: str
    records: int
    dataset: str = ""
    key: str = ""


@dataclass(frozen=True)
class DatasetSnapshot:
    uri: str
    sha256: str
    record_count: int | None
    heldout_count: int | None = None
    replay_count: int | None = None
    earlier_count: int | None = None
    datasets: dict[str, int] = field(default_factory=dict)
    drops: tuple[DropCount, ...] = ()
    trained_until: str = ""
    manifest_found: bool = False


@dataclass(frozen=True)
class TrainingSummary:
    steps: int | None
    final_loss: float | None
    tokens: int | None = None
    train_seconds: float | None = None
    tokens_per_second: float | None = None
    device: str = ""
    precision: str = ""
    finetune_method: str = ""
    trainable_parameters: int | None = None
    report_uri: str = ""


@dataclass(frozen=True)
class GateView:
    approved: bool
    summary: str
    reasons: tuple[str, ...]
    decided_at: str = ""
    champion_version: str = ""
    decision_uri: str = ""
    report_uri: str = ""
    policy: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentEvent:
    at: str
    kind: str  # promoted | superseded | rolled_back | restored | deploy | rollback | ...
    version: str
    actor: str = ""
    source: str = ""  # "versions" (the ModelVersions item) or "audit"
    detail: str = ""
    model_line: str = ""


@dataclass(frozen=True)
class ModelDetail:
    version: str
    status: str
    created_at: str
    updated_at: str = ""
    base_model: str = ""
    parent_version: str = ""
    execution_arn: str = ""
    dataset: DatasetSnapshot | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training: TrainingSummary | None = None
    loss_curve: tuple[float, ...] = ()
    scores: tuple[Score, ...] = ()
    benchmark_versions: dict[str, str] = field(default_factory=dict)
    gate: GateView | None = None
    model_package_arn: str = ""
    model_data_url: str = ""
    serving_backend: str = ""
    train_job: str = ""
    eval_job: str = ""
    deployments: tuple[DeploymentEvent, ...] = ()
    error: str = ""
    cause: str = ""
    timestamps: dict[str, str] = field(default_factory=dict)
    in_production: bool = False
    model_line: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


@dataclass(frozen=True)
class ScoreDifference:
    """Suite ``suite``: ``b - a`` with its CI. ``paired`` when computed item by item."""

    suite: str
    metric: str
    a: float | None
    b: float | None
    a_ci: tuple[float | None, float | None] = (None, None)
    b_ci: tuple[float | None, float | None] = (None, None)
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n_paired: int | None = None
    paired: bool = False
    how: str = ""  # where the difference comes from, or why it is not paired
    same_benchmark_version: bool | None = None


@dataclass(frozen=True)
class ParameterDifference:
    name: str
    a: Any
    b: Any


@dataclass(frozen=True)
class DatasetDifference:
    record_count_a: int | None
    record_count_b: int | None
    sha256_a: str
    sha256_b: str
    drops_added: tuple[DropCount, ...] = ()  # in b, not in a
    drops_removed: tuple[DropCount, ...] = ()  # in a, not in b
    drops_common: int = 0
    datasets: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (a, b)


@dataclass(frozen=True)
class ModelComparison:
    a: ModelDetail
    b: ModelDetail
    scores: tuple[ScoreDifference, ...]
    hyperparameters: tuple[ParameterDifference, ...]
    dataset: DatasetDifference
    loss_curve_a: tuple[float, ...] = ()
    loss_curve_b: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


# -- production -----------------------------------------------------------------------------
def freeze_view(names: PlatformNames) -> FreezeView:
    item = (
        aws.table(names.control_table).get_item(Key={"key": FREEZE_KEY}, ConsistentRead=True)
    ).get("Item")
    if not item:
        return FreezeView(frozen=False)
    item = plain(dict(item))
    return FreezeView(
        frozen=bool(item.get("frozen", False)),
        reason=str(item.get("reason", "")),
        by=str(item.get("by", "")),
        at=str(item.get("at", "")),
    )


def endpoint_view(names: PlatformNames, serving_version: str = "") -> EndpointView | None:
    """The endpoint's status and config (None when the stage has no endpoint output)."""
    if not names.endpoint_name:
        return None
    from tuneloop.release.deployment import describe_endpoint

    endpoint = describe_endpoint(names.endpoint_name)
    if endpoint is None:
        return EndpointView(name=names.endpoint_name, status="NotCreated")
    return EndpointView(
        name=names.endpoint_name,
        status=str(endpoint.get("EndpointStatus", "")),
        config_name=str(endpoint.get("EndpointConfigName", "")),
        serving_version=serving_version,
        failure_reason=str(endpoint.get("FailureReason", "")),
        updated_at=str(endpoint.get("LastModifiedTime", "")),
    )


def production(names: PlatformNames) -> ProductionView:
    """What the endpoint serves, since when and why; last-known-good; endpoint; freeze."""
    current = read_production(names.control_table)
    freeze = freeze_view(names)
    if current is None:
        why = (
            f"each model line serves its own version ({', '.join(names.lines().names)}): "
            "see model_lines"
            if names.lines()
            else "nothing has been deployed yet: the first approved run deploys itself"
        )
        return ProductionView(
            version="",
            why=why,
            endpoint=endpoint_view(names),
            freeze=freeze,
        )
    version = current.current.model_version
    item = _version_item(names, version) or {}
    rollback = plain(dict(current.item.get("last_rollback") or {}))
    deployed_by, how = _deployed_by(names, version, item, rollback)
    gate_summary = str(item.get("gate_summary", ""))
    since = str(item.get("restored_at") or item.get("promoted_at") or current.item["updated_at"])
    if rollback and rollback.get("at") and str(item.get("restored_at", "")) >= since:
        since = str(item.get("restored_at") or rollback.get("at"))
    lkg = current.last_known_good
    return ProductionView(
        version=version,
        since=since,
        why=how,
        deployed_by=deployed_by,
        gate_summary=gate_summary,
        scores=scores_of(item),
        record_count=_int(item.get("record_count")),
        last_known_good=lkg.model_version if lkg else "",
        endpoint_config_name=current.current.endpoint_config_name,
        endpoint=endpoint_view(names, version),
        freeze=freeze,
        last_rollback=rollback,
    )


def _deployed_by(
    names: PlatformNames, version: str, item: Mapping[str, Any], rollback: Mapping[str, Any]
) -> tuple[str, str]:
    """(who, why) for the version in production, from the audit trail, else the item."""
    for record in audit_records(names, target=version, limit=20):
        if record.get("action") in ("deploy", "auto_deploy", "rollback", "auto_rollback"):
            actor = str(record.get("actor", ""))
            verb = {
                "deploy": "deployed by",
                "auto_deploy": "deployed automatically by",
                "rollback": "rolled back to by",
                "auto_rollback": "restored by an alarm rollback:",
            }[str(record["action"])]
            return actor, f"{verb} {actor} at {record.get('at', '')}"
    if rollback and rollback.get("from_version") and item.get("restored_at"):
        alarm = rollback.get("alarm_name", "an alarm")
        return (
            "pipeline",
            f"restored as last-known-good when {alarm} fired on {rollback['from_version']}",
        )
    execution = str(item.get("execution_arn", "")).rsplit(":", 1)[-1]
    gate = str(item.get("gate_summary", "")) or "gate approved"
    return "pipeline", f"deployed by its retrain run {execution or version} ({gate})"


# -- models ---------------------------------------------------------------------------------
def _version_item(names: PlatformNames, version: str) -> dict[str, Any] | None:
    item = (
        aws.table(names.model_versions_table)
        .get_item(Key={"model_version": version}, ConsistentRead=True)
        .get("Item")
    )
    return plain(dict(item)) if item else None


def _int(value: Any) -> int | None:
    number = num(value)
    return None if number is None else int(number)


def scores_of(item: Mapping[str, Any]) -> tuple[Score, ...]:
    """The ``scores`` the gate stores on a version item (a JSON string; a map on items
    written before), as Score rows by suite."""
    scores = item.get("scores") or {}
    if isinstance(scores, str):
        try:
            scores = json.loads(scores)
        except ValueError:
            return ()
    if not isinstance(scores, Mapping):
        return ()
    rows = []
    for suite, raw in sorted(scores.items()):
        if not isinstance(raw, Mapping):
            continue
        rows.append(
            Score(
                suite=str(suite),
                metric=str(raw.get("metric", "")),
                value=num(raw.get("value")),
                ci_low=num(raw.get("ci_low")),
                ci_high=num(raw.get("ci_high")),
                n_items=_int(raw.get("n_items")),
                benchmark_version=str(raw.get("version", "")),
                champion=num(raw.get("champion")),
                diff=num(raw.get("diff")),
                diff_ci_low=num(raw.get("diff_ci_low")),
                diff_ci_high=num(raw.get("diff_ci_high")),
                passed=raw.get("passed") if isinstance(raw.get("passed"), bool) else None,
                role=str(raw.get("role", "")),
                lower_is_better=bool(raw.get("lower_is_better", False)),
            )
        )
    return tuple(rows)


def summary_items(names: PlatformNames, *, limit: int = VERSIONS_LISTED) -> list[dict[str, Any]]:
    """The newest ``limit`` version items, newest first, only the fields list views need
    (Queries of ModelVersions' ``by_month`` index, no Scan)."""
    return newest_first(
        names.model_versions_table,
        "created_month",
        limit=limit,
        ProjectionExpression=", ".join(_SUMMARY_FIELDS),
        ExpressionAttributeNames={"#status": "status", "#error": "error"},
    )


def list_models(
    names: PlatformNames,
    *,
    limit: int = VERSIONS_LISTED,
    items: list[dict[str, Any]] | None = None,
) -> list[ModelSummary]:
    """The newest ``limit`` model versions, newest first (or those of ``items``, from
    :func:`summary_items`), with one GetItem of Control per production item (the endpoint's,
    and each model line's) for what is serving."""
    serving = serving_versions(names)
    if items is None:
        items = summary_items(names, limit=limit)
    return [
        ModelSummary(
            version=str(item["model_version"]),
            status=str(item.get("status", "")),
            created_at=str(item.get("created_at", "")),
            record_count=_int(item.get("record_count")),
            parent_version=str(item.get("parent_version", "")),
            gate_approved=(
                item["gate_approved"] if isinstance(item.get("gate_approved"), bool) else None
            ),
            gate_summary=str(item.get("gate_summary", "")),
            scores=scores_of(item),
            updated_at=str(item.get("updated_at", "")),
            error=str(item.get("error", "")),
            in_production=str(item["model_version"]) in serving,
            model_line=str(item.get("model_line", "")),
        )
        for item in items
    ]


def serving_versions(names: PlatformNames) -> set[str]:
    """The versions in production: the endpoint's own and each model line's."""
    current = read_production(names.control_table)
    serving = {current.current.model_version} if current else set()
    serving |= {version for version in production_by_line(names).values() if version}
    return serving


def model_detail(names: PlatformNames, version: str) -> ModelDetail:
    """The whole lineage of ``version`` (its item plus its S3 documents)."""
    item = _version_item(names, version)
    if item is None:
        raise ViewError(
            f"no model version {version!r} in table {names.model_versions_table}; "
            "`tuneloop models list` shows the versions"
        )
    model_line = str(item.get("model_line", ""))
    current = read_production(names.control_table, production_key(model_line or None))
    model_data_url = str(item.get("model_data_url", ""))
    train_job = str(item.get("train_job") or f"{version}-train")
    eval_job = str(item.get("eval_job") or f"{version}-eval")
    jobs_root = f"s3://{names.artifacts_bucket}/jobs/{version}-train/output/model.tar.gz"
    train_output = job_output_uri(model_data_url or jobs_root, train_job)
    report = read_tar_json(train_output, "training_report.json") if train_output else None
    config = dict(report.get("config") or {}) if report else {}
    decision_uri = str(
        item.get("decision_s3_uri") or f"s3://{names.artifacts_bucket}/gate/{version}/decision.json"
    )
    decision = read_json(decision_uri)
    scores = scores_of(item) or _scores_from_decision(decision)
    benchmark_versions = {
        str(k): str(v)
        for k, v in dict(
            item.get("benchmark_versions") or (decision or {}).get("benchmark_versions") or {}
        ).items()
    }
    timestamps = {
        key: str(value)
        for key, value in item.items()
        if key.endswith("_at") and isinstance(value, str)
    }
    return ModelDetail(
        version=version,
        status=str(item.get("status", "")),
        created_at=str(item.get("created_at", "")),
        updated_at=str(item.get("updated_at", "")),
        base_model=str(config.get("base_model") or item.get("base_model", "")),
        parent_version=str(item.get("parent_version", "")),
        execution_arn=str(item.get("execution_arn", "")),
        dataset=_dataset(item),
        hyperparameters=_hyperparameters(config),
        training=_training(report, train_output),
        loss_curve=tuple(float(x) for x in (report or {}).get("losses") or ()),
        scores=scores,
        benchmark_versions=benchmark_versions,
        gate=_gate(decision, decision_uri, item),
        model_package_arn=str(item.get("model_package_arn", "")),
        model_data_url=model_data_url,
        serving_backend=str(item.get("serving_backend", "")),
        train_job=train_job if report or item.get("train_job") else "",
        eval_job=eval_job if item.get("eval_job") else "",
        deployments=tuple(deployment_history(names, items=[item])),
        error=str(item.get("error", "")),
        cause=str(item.get("cause", "")),
        timestamps=timestamps,
        in_production=bool(current and current.current.model_version == version),
        model_line=model_line,
    )


def _hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    # What the run was given; paths of one job's container are not parameters.
    skip = {"model_version", "checkpoint_dir", "init_adapter"}
    return {str(k): plain(v) for k, v in sorted(config.items()) if k not in skip}


def _training(report: Mapping[str, Any] | None, uri: str) -> TrainingSummary | None:
    if not report:
        return None
    return TrainingSummary(
        steps=_int(report.get("steps")),
        final_loss=num(report.get("final_loss")),
        tokens=_int(report.get("tokens")),
        train_seconds=num(report.get("train_seconds")),
        tokens_per_second=num(report.get("tokens_per_second")),
        device=str(report.get("device", "")),
        precision=str(report.get("precision", "")),
        finetune_method=str(report.get("finetune_method", "")),
        trainable_parameters=_int(report.get("trainable_parameters")),
        report_uri=uri,
    )


def _dataset(item: Mapping[str, Any]) -> DatasetSnapshot | None:
    uri = str(item.get("dataset_s3_uri", ""))
    if not uri:
        return None
    manifest = read_json(uri.rstrip("/") + "/manifest.json") or {}
    drops = manifest.get("drops") or {}
    rows = []
    if isinstance(drops, Mapping):
        for drop_id, entry in drops.items():
            if isinstance(entry, Mapping):
                rows.append(
                    DropCount(
                        drop_id=str(drop_id),
                        records=int(entry.get("records", 0)),
                        dataset=str(entry.get("dataset", "")),
                        key=str(entry.get("key", "")),
                    )
                )
            else:
                rows.append(DropCount(drop_id=str(drop_id), records=int(entry)))
    rows.sort(key=lambda d: (-d.records, d.drop_id))
    datasets = manifest.get("datasets") or item.get("datasets") or {}
    return DatasetSnapshot(
        uri=uri,
        sha256=str(item.get("dataset_sha256") or manifest.get("sha256", "")),
        record_count=_int(item.get("record_count", manifest.get("record_count"))),
        heldout_count=_int(item.get("heldout_count", manifest.get("heldout_count"))),
        replay_count=_int(item.get("replay_count", manifest.get("replay_count"))),
        earlier_count=_int(item.get("earlier_count", manifest.get("earlier_count"))),
        datasets={str(k): int(v) for k, v in dict(datasets).items()},
        drops=tuple(rows),
        trained_until=str(manifest.get("trained_until", "")),
        manifest_found=bool(manifest),
    )


def _gate(decision: Mapping[str, Any] | None, uri: str, item: Mapping[str, Any]) -> GateView | None:
    if not decision:
        if isinstance(item.get("gate_approved"), bool):
            return GateView(
                approved=bool(item["gate_approved"]),
                summary=str(item.get("gate_summary", "")),
                reasons=(),
                decided_at=str(item.get("gated_at", "")),
                decision_uri=str(item.get("decision_s3_uri", "")),
            )
        return None
    return GateView(
        approved=bool(decision.get("approved")),
        summary=str(decision.get("summary", "")),
        reasons=tuple(str(r) for r in decision.get("reasons") or ()),
        decided_at=str(decision.get("decided_at", "")),
        champion_version=str(decision.get("champion_version", "")),
        decision_uri=uri,
        report_uri=uri.rsplit("/", 1)[0] + "/report.html",
        policy=plain(dict(decision.get("policy") or {})),
    )


def _scores_from_decision(decision: Mapping[str, Any] | None) -> tuple[Score, ...]:
    """For versions gated before the gate stored ``scores``: its comparisons."""
    if not decision:
        return ()
    versions = decision.get("benchmark_versions") or {}
    benchmarks = decision.get("benchmarks") or {}
    rows = []
    for comparison in decision.get("comparisons") or ():
        suite = str(comparison.get("suite", ""))
        info = benchmarks.get(suite) if isinstance(benchmarks, Mapping) else None
        rows.append(
            Score(
                suite=suite,
                metric=str(comparison.get("metric", "")),
                value=num(comparison.get("candidate")),
                n_items=_int(info.get("n_items")) if isinstance(info, Mapping) else None,
                benchmark_version=str(versions.get(suite, "")),
                champion=num(comparison.get("champion")),
                diff=num(comparison.get("diff")),
                diff_ci_low=num(comparison.get("ci_low")),
                diff_ci_high=num(comparison.get("ci_high")),
                passed=bool(comparison.get("passed")),
                role=str(comparison.get("role", "")),
                lower_is_better=bool(comparison.get("lower_is_better", False)),
            )
        )
    return tuple(sorted(rows, key=lambda s: s.suite))


# -- compare --------------------------------------------------------------------------------
def compare_models(names: PlatformNames, a: str, b: str) -> ModelComparison:
    """``b`` against ``a``: differences are ``b - a``."""
    if a == b:
        raise ViewError(f"compare two different versions (got {a} twice)")
    left, right = model_detail(names, a), model_detail(names, b)
    return ModelComparison(
        a=left,
        b=right,
        scores=_score_differences(names, left, right),
        hyperparameters=_parameter_differences(left.hyperparameters, right.hyperparameters),
        dataset=_dataset_difference(left.dataset, right.dataset),
        loss_curve_a=left.loss_curve,
        loss_curve_b=right.loss_curve,
    )


def _parameter_differences(
    a: Mapping[str, Any], b: Mapping[str, Any]
) -> tuple[ParameterDifference, ...]:
    return tuple(
        ParameterDifference(name=name, a=a.get(name), b=b.get(name))
        for name in sorted(set(a) | set(b))
        if a.get(name) != b.get(name)
    )


def _dataset_difference(a: DatasetSnapshot | None, b: DatasetSnapshot | None) -> DatasetDifference:
    drops_a = {d.drop_id: d for d in (a.drops if a else ())}
    drops_b = {d.drop_id: d for d in (b.drops if b else ())}
    datasets_a, datasets_b = (a.datasets if a else {}), (b.datasets if b else {})
    return DatasetDifference(
        record_count_a=a.record_count if a else None,
        record_count_b=b.record_count if b else None,
        sha256_a=a.sha256 if a else "",
        sha256_b=b.sha256 if b else "",
        drops_added=tuple(drops_b[d] for d in sorted(set(drops_b) - set(drops_a))),
        drops_removed=tuple(drops_a[d] for d in sorted(set(drops_a) - set(drops_b))),
        drops_common=len(set(drops_a) & set(drops_b)),
        datasets={
            name: (int(datasets_a.get(name, 0)), int(datasets_b.get(name, 0)))
            for name in sorted(set(datasets_a) | set(datasets_b))
        },
    )


def _score_differences(
    names: PlatformNames, a: ModelDetail, b: ModelDetail
) -> tuple[ScoreDifference, ...]:
    scores_a = {s.suite: s for s in a.scores}
    scores_b = {s.suite: s for s in b.scores}
    items: dict[str, dict[str, Any]] = {}  # version -> evaluation.json, read when needed
    rows = []
    for suite in sorted(set(scores_a) | set(scores_b)):
        sa, sb = scores_a.get(suite), scores_b.get(suite)
        chosen = sb or sa
        metric = chosen.metric if chosen else ""
        base = ScoreDifference(
            suite=suite,
            metric=metric,
            a=sa.value if sa else None,
            b=sb.value if sb else None,
            a_ci=(sa.ci_low, sa.ci_high) if sa else (None, None),
            b_ci=(sb.ci_low, sb.ci_high) if sb else (None, None),
            same_benchmark_version=(
                sa.benchmark_version == sb.benchmark_version
                if sa and sb and sa.benchmark_version and sb.benchmark_version
                else None
            ),
        )
        rows.append(_paired(names, base, a, b, sa, sb, items))
    return tuple(rows)


def _paired(
    names: PlatformNames,
    row: ScoreDifference,
    a: ModelDetail,
    b: ModelDetail,
    sa: Score | None,
    sb: Score | None,
    cache: dict[str, dict[str, Any]],
) -> ScoreDifference:
    from dataclasses import replace

    if sa is None or sb is None:
        return replace(row, how=f"only {'b' if sa is None else 'a'} was scored on {row.suite}")
    # The gate compared b with its champion a (or a with b) item by item, in one job.
    if b.parent_version == a.version and sb.diff is not None:
        return replace(
            row,
            diff=sb.diff,
            ci_low=sb.diff_ci_low,
            ci_high=sb.diff_ci_high,
            n_paired=sb.n_items,
            paired=True,
            how=f"the gate's paired comparison of {b.version} with its champion",
        )
    if a.parent_version == b.version and sa.diff is not None:
        return replace(
            row,
            diff=-sa.diff,
            ci_low=-sa.diff_ci_high if sa.diff_ci_high is not None else None,
            ci_high=-sa.diff_ci_low if sa.diff_ci_low is not None else None,
            n_paired=sa.n_items,
            paired=True,
            how=f"the gate's paired comparison of {a.version} with its champion, negated",
        )
    unpaired = replace(
        row, diff=(sb.value - sa.value) if sa.value is not None and sb.value is not None else None
    )
    if row.same_benchmark_version is False:
        return replace(unpaired, how="different benchmark versions: not paired")
    field_name = _ITEM_FIELDS.get(row.metric)
    if field_name is None:
        return replace(unpaired, how=f"{row.metric}: no per-item pairing; difference of means")
    values_a = _item_values(names, a, row.suite, field_name, cache)
    values_b = _item_values(names, b, row.suite, field_name, cache)
    common = [i for i in values_b if i in values_a]
    if not common:
        return replace(unpaired, how="no per-item results to pair: difference of means")
    diffs = [values_b[i] - values_a[i] for i in common]
    low, high = _bootstrap(diffs, f"{a.version}:{b.version}:{row.suite}")
    return replace(
        row,
        diff=math.fsum(diffs) / len(diffs),
        ci_low=low,
        ci_high=high,
        n_paired=len(diffs),
        paired=True,
        how="paired bootstrap over the items both were scored on (95% CI)",
    )


def _item_values(
    names: PlatformNames,
    detail: ModelDetail,
    suite: str,
    field_name: str,
    cache: dict[str, dict[str, Any]],
) -> dict[str, float]:
    if detail.version not in cache:
        eval_job = detail.eval_job or f"{detail.version}-eval"
        root = detail.model_data_url or (
            f"s3://{names.artifacts_bucket}/jobs/{detail.version}-train/output/model.tar.gz"
        )
        cache[detail.version] = (
            read_tar_json(job_output_uri(root, eval_job), "evaluation.json") or {}
        )
    results = (cache[detail.version].get("results") or {}).get("candidate") or {}
    items = (results.get(suite) or {}).get("items") or []
    values: dict[str, float] = {}
    for entry in items:
        value = entry.get(field_name) if isinstance(entry, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[str(entry.get("id"))] = float(value)
    return values


def _bootstrap(diffs: Sequence[float], seed: str, samples: int = 2000) -> tuple[float, float]:
    from tuneloop.gating.stats import paired_bootstrap_ci

    return paired_bootstrap_ci(list(diffs), samples, 0.95, random.Random(seed))


# -- deployments ----------------------------------------------------------------------------
_ITEM_EVENTS = (
    ("deploy_started_at", "deploy_started", ""),
    ("promoted_at", "promoted", "serving in production"),
    ("superseded_at", "superseded", "replaced by {superseded_by}"),
    ("rolled_back_at", "rolled_back", "rolled back ({rollback_alarm})"),
    ("restored_at", "restored", "restored as last-known-good"),
)
_AUDIT_ACTIONS = ("deploy", "rollback", "auto_deploy", "auto_rollback")


def audit_records(
    names: PlatformNames,
    *,
    who: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Audit records, newest first, as dicts ([] while the stage has no audit table)."""
    if not names.audit_table:
        return []
    import importlib

    try:
        audit: Any = importlib.import_module("tuneloop.operations.audit")
    except ImportError:  # the audit module is not part of this build
        return []
    from botocore.exceptions import ClientError

    try:
        records = audit.list_records(
            names.audit_table, who=who, action=action, target=target, limit=limit
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        raise
    out = []
    for record in records:
        data = dict(plain(record.to_dict() if hasattr(record, "to_dict") else to_dict(record)))
        out.append({**data, "model_line": record_line(data)})
    return out


def record_line(record: Mapping[str, Any]) -> str:
    """The model line an audit record's change was on ("" for the endpoint's own model)."""
    after, before = record.get("after") or {}, record.get("before") or {}
    return str(after.get("model_line") or before.get("model_line") or "")


def deployment_history(
    names: PlatformNames,
    *,
    items: list[dict[str, Any]] | None = None,
    only_these: bool = True,
) -> list[DeploymentEvent]:
    """Promotions, supersessions, rollbacks and restorations (from the version items: given,
    else the newest :data:`VERSIONS_LISTED`) and the deploys and rollbacks people and the
    pipeline asked for (audit trail; with ``items`` and ``only_these``, only theirs), newest
    first."""
    versions = items if items is not None else summary_items(names)
    events = []
    for item in versions:
        version = str(item.get("model_version", ""))
        for stamp, kind, detail in _ITEM_EVENTS:
            if item.get(stamp):
                text = detail.format(
                    superseded_by=item.get("superseded_by", "?"),
                    rollback_alarm=item.get("rollback_alarm") or "requested",
                )
                events.append(
                    DeploymentEvent(
                        at=str(item[stamp]),
                        kind=kind,
                        version=version,
                        source="versions",
                        detail=text,
                        model_line=str(item.get("model_line", "")),
                    )
                )
    only = (
        {str(i.get("model_version", "")) for i in versions}
        if items is not None and only_these
        else None
    )
    for record in audit_records(names, limit=500):
        if record.get("action") not in _AUDIT_ACTIONS:
            continue
        target = str(record.get("target", ""))
        after = record.get("after") or {}
        version = str(after.get("model_version") or after.get("version") or target)
        if only is not None and version not in only and target not in only:
            continue
        events.append(
            DeploymentEvent(
                at=str(record.get("at", "")),
                kind=str(record["action"]),
                version=version,
                actor=str(record.get("actor", "")),
                source="audit",
                detail=f"{record.get('source', '')} request {record.get('request_id', '')}".strip(),
                model_line=str(record.get("model_line", "")),
            )
        )
    events.sort(key=lambda e: e.at, reverse=True)
    return events


from tuneloop.operations.views_data import (  # noqa: E402 - re-exported read models
    AlarmState,
    BenchmarkRunView,
    BenchmarkSuite,
    DropDetail,
    DropSummary,
    ScorePoint,
    alarm_states,
    benchmark_history,
    benchmark_runs,
    benchmark_suites,
    drop_detail,
    list_drops,
    records_over_time,
)
from tuneloop.operations.views_evaluation import (  # noqa: E402 - re-exported read models
    EvaluationPoint,
    evaluation_history,
)
from tuneloop.operations.views_runs import (  # noqa: E402 - re-exported read models
    RunDetail,
    RunStep,
    RunSummary,
    list_runs,
    run_detail,
)

__all__ = [
    "AlarmState",
    "BenchmarkRunView",
    "BenchmarkSuite",
    "ComponentView",
    "DatasetDifference",
    "DatasetSnapshot",
    "DeploymentEvent",
    "DropCount",
    "DropDetail",
    "DropSummary",
    "EndpointView",
    "EvaluationPoint",
    "FreezeView",
    "GateView",
    "LineProductionView",
    "ModelComparison",
    "ModelDetail",
    "ModelSummary",
    "ParameterDifference",
    "ProductionView",
    "RunDetail",
    "RunStep",
    "RunSummary",
    "Score",
    "ScoreDifference",
    "ScorePoint",
    "TrainingSummary",
    "ViewError",
    "alarm_states",
    "audit_records",
    "benchmark_history",
    "benchmark_runs",
    "benchmark_suites",
    "compare_models",
    "deployment_history",
    "drop_detail",
    "evaluation_history",
    "freeze_view",
    "line_productions",
    "list_drops",
    "list_models",
    "list_runs",
    "model_detail",
    "production",
    "production_by_line",
    "records_over_time",
    "run_detail",
    "scores_of",
    "summary_items",
]
