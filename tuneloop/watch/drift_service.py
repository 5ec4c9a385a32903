"""The scheduled drift check: one window of captured prompts against production's training data.

The DriftCheck function (an EventBridge Scheduler schedule, daily by default, or
``tuneloop watch drift``) calls :func:`check_drift` with the window ending at the
schedule's time:

1. the reference: up to ``reference_sample`` prompts of the production version's training
   data (:mod:`tuneloop.watch.drift_reference`);
2. the window: the captured exchanges of ``[end - window_hours, end)``, redacted
   (:mod:`tuneloop.watch.capture`); fewer than ``min_prompts`` of them is "too few prompts",
   reported but not judged and not alarmed on;
3. the verdict (:func:`tuneloop.watch.drift.detect_drift`);
4. with ``retrain_on_drift`` and drift, the window's exchanges as a data drop in the raw
   bucket, ``drops/<retrain_dataset>/drift/<endpoint>/<window end>.jsonl`` with its sidecar
   manifest (ingestion redacts, dedups and counts them toward the retrain threshold);
5. ``report.html`` and ``result.json`` under ``s3://<curated>/watch/drift/<endpoint>/<window
   end>/`` (:mod:`tuneloop.watch.drift_report`);
6. the ``TuneLoop/Drift`` metrics (dimension ``EndpointName``); the alarm on
   ``DriftDetected`` notifies people.

The same window end gives the same keys, so a delivery the scheduler retries rewrites the
same objects and ingestion counts a re-written drop once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tuneloop import aws
from tuneloop.ingest.redaction import Redactor, all_redactors
from tuneloop.watch.capture import CapturedExchange, read_window
from tuneloop.watch.drift import DriftResult, detect_drift
from tuneloop.watch.drift_check import MAX_CURRENT, current_prompts, reference_prompts
from tuneloop.watch.drift_reference import Reference, production_reference
from tuneloop.watch.drift_report import distribution, render_report
from tuneloop.watch.drift_settings import MAX_WINDOW_HOURS, DriftCheckSettings

NAMESPACE = "TuneLoop/Drift"
SCHEDULED, MANUAL = "scheduled", "manual"
TRIGGERS = (SCHEDULED, MANUAL)
REPORT_PREFIX = "watch/drift/"
VARIANT = "AllTraffic"  # the one production variant Deploy creates (tuneloop.release.deployment)
DROP_SOURCE = "drift_check"
MANIFEST_SUFFIX = ".manifest.json"
# status of a check
DRIFT, NO_DRIFT = "drift", "no_drift"
TOO_FEW_PROMPTS, NO_REFERENCE, NO_PRODUCTION = "too_few_prompts", "no_reference", "no_production"
MIN_REFERENCE = 4  # the domain classifier's minimum per side


class DriftCheckInputError(ValueError):
    """The function's event is malformed; the message names the field."""


@dataclass(frozen=True)
class DriftCheckRequest:
    """``{"trigger": "scheduled"|"manual", "scheduled_time": "<ISO-8601>", "window_hours"?}``."""

    trigger: str
    window_end: datetime
    window_hours: int | None = None  # None: the stage's window_hours

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> DriftCheckRequest:
        trigger = event.get("trigger", SCHEDULED)
        if trigger not in TRIGGERS:
            raise DriftCheckInputError(
                f"drift check input: trigger must be one of {TRIGGERS}, got {trigger!r}"
            )
        raw = event.get("scheduled_time")
        if not isinstance(raw, str) or not raw:
            raise DriftCheckInputError("drift check input: 'scheduled_time' is missing")
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise DriftCheckInputError(
                f"drift check input: scheduled_time {raw!r} is not ISO-8601"
            ) from exc
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        hours = event.get("window_hours")
        if hours is not None and (
            isinstance(hours, bool)
            or not isinstance(hours, int)
            or not 1 <= hours <= MAX_WINDOW_HOURS
        ):
            raise DriftCheckInputError(
                f"drift check input: window_hours must be a whole number in "
                f"1..{MAX_WINDOW_HOURS}, got {hours!r}"
            )
        return cls(str(trigger), when.astimezone(UTC), hours)


def request_input(
    *, hours: int | None = None, when: datetime | None = None, trigger: str = MANUAL
) -> dict[str, Any]:
    """What ``tuneloop watch drift`` sends (the schedule sends the same without hours)."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    event: dict[str, Any] = {
        "trigger": trigger,
        "scheduled_time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if hours is not None:
        event["window_hours"] = hours
    return event


@dataclass(frozen=True)
class DriftLocations:
    curated_bucket: str
    raw_bucket: str
    control_table: str
    model_versions_table: str
    endpoint_name: str


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_prefix(endpoint: str, window_end: datetime) -> str:
    return f"{REPORT_PREFIX}{endpoint}/{stamp(window_end)}/"


def check_drift(
    request: DriftCheckRequest,
    *,
    where: DriftLocations,
    settings: DriftCheckSettings,
    redactors: Sequence[Redactor] | None = None,
) -> dict[str, Any]:
    """Judge one window; store its report; publish its metrics; return the summary."""
    chosen = list(redactors) if redactors is not None else all_redactors()
    hours = request.window_hours or settings.window_hours
    end = request.window_end
    start = end - timedelta(hours=hours)
    base: dict[str, Any] = {
        "endpoint": where.endpoint_name,
        "trigger": request.trigger,
        "window_start": _iso(start),
        "window_end": _iso(end),
        "window_hours": hours,
    }
    reference = production_reference(
        control_table=where.control_table,
        model_versions_table=where.model_versions_table,
        curated_bucket=where.curated_bucket,
        sample=settings.reference_sample,
    )
    if reference is None:
        return {
            **base,
            "status": NO_PRODUCTION,
            "drift_detected": False,
            "summary": "nothing is in production: no training data to compare with",
            "prompts": 0,
            "model_version": "",
            "report_uri": "",
            "retrain_drop": "",
        }
    exchanges = read_window(
        aws.s3(),
        where.curated_bucket,
        where.endpoint_name,
        VARIANT,
        start,
        end,
        chosen,
        limit=MAX_CURRENT,
    )
    result: DriftResult | None = None
    if len(exchanges) < settings.min_prompts:
        status = TOO_FEW_PROMPTS
        summary = (
            f"too few prompts: {len(exchanges)} captured in the window, at least "
            f"{settings.min_prompts} needed to judge drift"
        )
    elif len(reference.texts) < MIN_REFERENCE:
        status = NO_REFERENCE
        summary = (
            f"too few reference prompts: {len(reference.texts)} in {reference.dataset_s3_uri} "
            f"(of {reference.records_read} records read; text records have no prompt)"
        )
    else:
        result = detect_drift(
            reference_prompts(reference.texts, chosen), current_prompts(exchanges)
        )
        status = DRIFT if result.drift_detected else NO_DRIFT
        summary = result.summary
    drop = ""
    if result is not None and result.drift_detected and settings.retrain_on_drift:
        drop = write_retrain_drop(where, settings, end, exchanges)
    prefix = report_prefix(where.endpoint_name, end)
    outcome = {
        **base,
        "status": status,
        "drift_detected": bool(result and result.drift_detected),
        "summary": summary,
        "prompts": len(exchanges),
        "prompts_capped": len(exchanges) >= MAX_CURRENT,
        "model_version": reference.model_version,
        "reference": reference.to_dict(),
        "features": _features(result),
        "classifier": _classifier(result),
        "report_uri": f"s3://{where.curated_bucket}/{prefix}report.html",
        "result_uri": f"s3://{where.curated_bucket}/{prefix}result.json",
        "retrain_drop": drop,
    }
    _store(where.curated_bucket, prefix, outcome, reference, result)
    publish(outcome)
    return outcome


def _features(result: DriftResult | None) -> list[dict[str, Any]]:
    if result is None:
        return []
    return [
        {
            "name": f.name,
            "psi": f.psi,
            "p_value": f.p_value,
            "drift": f.drift,
            "distribution": distribution(f).to_dict(),
        }
        for f in result.features
    ]


def _classifier(result: DriftResult | None) -> dict[str, Any] | None:
    verdict = result.classifier if result else None
    if verdict is None:
        return None
    return {
        "auc": verdict.auc,
        "auc_lower_bound": verdict.auc_lower_bound,
        "drift": verdict.drift,
        "top_features": [{"ngrams": g, "weight": w} for g, w in verdict.top_features],
    }


def _store(
    bucket: str,
    prefix: str,
    outcome: Mapping[str, Any],
    reference: Reference,
    result: DriftResult | None,
) -> None:
    html = render_report(
        endpoint=str(outcome["endpoint"]),
        model_version=reference.model_version,
        window_start=str(outcome["window_start"]),
        window_end=str(outcome["window_end"]),
        trigger=str(outcome["trigger"]),
        summary=str(outcome["summary"]),
        prompts=int(outcome["prompts"]),
        reference_prompts=len(reference.texts),
        reference_source=reference.source,
        result=result,
        generated_at=_iso(datetime.now(UTC)),
    )
    s3 = aws.s3()
    s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}report.html",
        Body=html.encode("utf-8"),
        ContentType="text/html; charset=utf-8",
    )
    s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}result.json",
        Body=json.dumps(outcome, indent=2, sort_keys=True).encode("utf-8"),
        ContentType="application/json",
    )


def metric_data(outcome: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``Prompts`` always; ``DriftDetected`` (0/1, the alarm's metric), ``MaxPsi`` and
    ``ClassifierAuc`` only for a judged window: an unjudged one leaves the alarm as it is."""
    now = datetime.now(UTC)
    data = [("Prompts", float(outcome["prompts"]), "Count")]
    if outcome["status"] in (DRIFT, NO_DRIFT):
        data.append(("DriftDetected", float(bool(outcome["drift_detected"])), "None"))
        data.append(("MaxPsi", max(f["psi"] for f in outcome["features"]), "None"))
        if outcome.get("classifier"):
            data.append(("ClassifierAuc", float(outcome["classifier"]["auc"]), "None"))
    dimensions = [{"Name": "EndpointName", "Value": str(outcome["endpoint"])}]
    return [
        {
            "MetricName": name,
            "Value": value,
            "Unit": unit,
            "Timestamp": now,
            "Dimensions": dimensions,
        }
        for name, value, unit in data
    ]


def publish(outcome: Mapping[str, Any]) -> None:
    aws.client("cloudwatch").put_metric_data(Namespace=NAMESPACE, MetricData=metric_data(outcome))


def drop_key(settings: DriftCheckSettings, endpoint: str, window_end: datetime) -> str:
    return f"{settings.drop_prefix}{endpoint}/{stamp(window_end)}.jsonl"


def drop_records(exchanges: Sequence[CapturedExchange]) -> list[dict[str, Any]]:
    """The exchanges with an answer as chat records (already redacted; ingestion redacts
    again, and dedups)."""
    return [
        {
            "messages": [
                {"role": "user", "content": e.prompt},
                {"role": "assistant", "content": e.response},
            ]
        }
        for e in exchanges
        if e.prompt.strip() and e.response.strip()
    ]


def write_retrain_drop(
    where: DriftLocations,
    settings: DriftCheckSettings,
    window_end: datetime,
    exchanges: Sequence[CapturedExchange],
) -> str:
    """The window's exchanges as a JSONL drop, its sidecar manifest first (so ingestion never
    sees the data without it); returns the data key ("" when no exchange had an answer)."""
    records = drop_records(exchanges)
    if not records:
        return ""
    key = drop_key(settings, where.endpoint_name, window_end)
    manifest = {
        "dataset": settings.retrain_dataset,
        "source": DROP_SOURCE,
        "tags": [f"drift_window:{stamp(window_end)}", f"endpoint:{where.endpoint_name}"],
    }
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    s3 = aws.s3()
    s3.put_object(
        Bucket=where.raw_bucket,
        Key=key + MANIFEST_SUFFIX,
        Body=json.dumps(manifest, sort_keys=True).encode("utf-8"),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=where.raw_bucket,
        Key=key,
        Body=body.encode("utf-8"),
        ContentType="application/x-ndjson",
    )
    return f"s3://{where.raw_bucket}/{key}"


class DriftCheckFailedError(RuntimeError):
    """The DriftCheck function failed; the message carries its error."""


def invoke_drift_check(function_name: str, *, hours: int | None = None) -> dict[str, Any]:
    """Invoke the deployed DriftCheck function now (``trigger: manual``); its summary."""
    response = aws.client("lambda").invoke(
        FunctionName=function_name,
        InvocationType="RequestResponse",
        Payload=json.dumps(request_input(hours=hours)).encode(),
    )
    payload = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        message = payload.get("errorMessage", payload) if isinstance(payload, dict) else payload
        raise DriftCheckFailedError(f"the DriftCheck function {function_name} failed: {message}")
    return dict(payload)


def run_drift_check_now(stage: str | None = None, *, hours: int | None = None) -> dict[str, Any]:
    """The stage's drift check, now: finds the function from the stack outputs (stage
    default: ``$TUNELOOP_STAGE``, else cdk.json's) and returns its summary. The demo and
    ``tuneloop watch drift`` call this."""
    from tuneloop.operations.names import PlatformNames, default_stage

    names = PlatformNames.for_stage(default_stage(stage))
    return invoke_drift_check(names.require("drift_check_function"), hours=hours)
