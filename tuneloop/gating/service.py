"""The Gate step's I/O: read the Evaluate job's report, store the decision, mark the model.

Clients are passed in (the handler creates them per call), so this module imports no boto3.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tuneloop.gating.decide import GateDecision, ReportError, decide
from tuneloop.gating.policy import GatePolicy
from tuneloop.gating.report import render_report
from tuneloop.gating.scores import gate_fields
from tuneloop.release import model_versions

REPORT_FILE = "evaluation.json"


class GateEventError(ValueError):
    """The Gate state's input is malformed; the message names the field."""


class GateError(RuntimeError):
    """The gate cannot complete (report or model version not found)."""


@dataclass(frozen=True)
class GateEvent:
    model_version: str
    job_name: str
    output_path: str
    champion_version: str = ""
    # PrepareDataset's frozen versions ({name: version}); empty when the run froze none.
    benchmark_versions: Mapping[str, str] | None = None
    # The model line the run trains ("" for the endpoint's one model): named in the decision.
    model_line: str = ""

    @classmethod
    def parse(cls, event: Any) -> GateEvent:
        if not isinstance(event, Mapping):
            raise GateEventError("Gate input: must be an object")
        evaluation = event.get("evaluation")
        if not isinstance(evaluation, Mapping):
            raise GateEventError("Gate input: evaluation: required, {job_name, output_path}")
        fields = {
            "model_version": event.get("model_version"),
            "evaluation.job_name": evaluation.get("job_name"),
            "evaluation.output_path": evaluation.get("output_path"),
        }
        for name, value in fields.items():
            if not isinstance(value, str) or not value.strip():
                raise GateEventError(f"Gate input: {name}: required, a non-empty string")
        output_path = str(fields["evaluation.output_path"])
        if not output_path.startswith("s3://"):
            raise GateEventError("Gate input: evaluation.output_path: must be an s3:// URI")
        champion = event.get("champion_version") or ""
        if not isinstance(champion, str):
            raise GateEventError("Gate input: champion_version: a string (empty if none)")
        model_line = event.get("model_line") or ""
        if not isinstance(model_line, str):
            raise GateEventError("Gate input: model_line: a string (empty without lines)")
        frozen = event.get("benchmark_versions") or {}
        if not isinstance(frozen, Mapping) or not all(isinstance(v, str) for v in frozen.values()):
            raise GateEventError("Gate input: benchmark_versions: an object {name: version}")
        return cls(
            model_version=str(fields["model_version"]),
            job_name=str(fields["evaluation.job_name"]),
            output_path=output_path,
            champion_version=champion,
            benchmark_versions={str(k): str(v) for k, v in frozen.items()},
            model_line=model_line,
        )


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def report_location(output_path: str, job_name: str) -> tuple[str, str]:
    """``<output_path>/<job_name>/output/output.tar.gz`` as (bucket, key)."""
    bucket, prefix = split_s3_uri(output_path)
    parts = (prefix.strip("/"), job_name, "output", "output.tar.gz")
    return bucket, "/".join(part for part in parts if part)


def read_report(s3: Any, output_path: str, job_name: str) -> dict[str, Any]:
    """``evaluation.json`` from the job's ``output.tar.gz``."""
    bucket, key = report_location(output_path, job_name)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        raise GateError(f"evaluation output s3://{bucket}/{key} not found") from exc
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
            member = next(
                (m for m in tar.getmembers() if m.isfile() and m.name.lstrip("./") == REPORT_FILE),
                None,
            )
            if member is None:
                raise ReportError(f"s3://{bucket}/{key} holds no {REPORT_FILE}")
            handle = tar.extractfile(member)
            assert handle is not None  # a regular file always has content
            report = json.loads(handle.read().decode("utf-8"))
    except (tarfile.TarError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"s3://{bucket}/{key}: unreadable {REPORT_FILE} ({exc})") from exc
    if not isinstance(report, dict):
        raise ReportError(f"s3://{bucket}/{key}: {REPORT_FILE} is not a JSON object")
    return report


def run_gate(
    event: GateEvent,
    policy: GatePolicy,
    *,
    artifacts_bucket: str,
    model_versions_table: str,
    s3: Any,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Decide, store the decision, update the ModelVersions item; the Gate state's result."""
    report = read_report(s3, event.output_path, event.job_name)
    decision = decide(report, policy, expect_champion=bool(event.champion_version))
    evaluated = evaluated_versions(report)
    mismatches = version_mismatches(event.benchmark_versions or {}, evaluated)
    if mismatches:
        decision.approved = False
        decision.reasons.extend(mismatches)
    timestamp = (now or datetime.now(UTC)).isoformat()
    prefix = f"gate/{event.model_version}/"
    document = {
        **decision.to_dict(),
        "summary": decision.summary,
        "model_version": event.model_version,
        "champion_version": event.champion_version,
        **({"model_line": event.model_line} if event.model_line else {}),
        "evaluation_job": event.job_name,
        "benchmarks": report.get("benchmarks", {}),
        # Candidate and champion are scored in one Evaluate job, on these versions.
        "benchmark_versions": evaluated,
        "benchmark_versions_note": (
            "candidate and champion were evaluated in the same job on these benchmark "
            "versions (custom suites frozen by PrepareDataset for this run)"
        ),
        "policy": policy.to_dict(),
        "decided_at": timestamp,
    }
    s3.put_object(
        Bucket=artifacts_bucket,
        Key=f"{prefix}decision.json",
        Body=json.dumps(document, indent=1).encode("utf-8"),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=artifacts_bucket,
        Key=f"{prefix}report.html",
        Body=render_report(document, decision, report).encode("utf-8"),
        ContentType="text/html; charset=utf-8",
    )
    uri = f"s3://{artifacts_bucket}/{prefix}decision.json"
    fields = gate_fields(report, decision, evaluated, confidence=policy.confidence)
    record_decision(
        model_versions_table, event.model_version, uri, decision, timestamp, fields=fields
    )
    return {
        "approved": decision.approved,
        "decision_s3_uri": uri,
        "report_s3_uri": f"s3://{artifacts_bucket}/{prefix}report.html",
        "summary": decision.summary,
    }


def evaluated_versions(report: Mapping[str, Any]) -> dict[str, str]:
    """``{suite: version}`` as the evaluation report states them."""
    benchmarks = report.get("benchmarks")
    if not isinstance(benchmarks, Mapping):
        return {}
    return {
        str(name): str(info["version"])
        for name, info in sorted(benchmarks.items())
        if isinstance(info, Mapping) and isinstance(info.get("version"), str)
    }


def version_mismatches(frozen: Mapping[str, str], evaluated: Mapping[str, str]) -> list[str]:
    """Reasons to reject when the job did not score the versions PrepareDataset froze."""
    problems = []
    for name, version in sorted(frozen.items()):
        found = evaluated.get(name)
        if found != version:
            problems.append(
                f"{name}: frozen at benchmark version {version[:12]} but evaluated on "
                + (f"version {found[:12]}" if found else "no version (suite missing)")
            )
    return problems


def record_decision(
    model_versions_table: str,
    model_version: str,
    decision_uri: str,
    decision: GateDecision,
    timestamp: str,
    *,
    fields: dict[str, Any] | None = None,
) -> None:
    """Set ``decision_s3_uri`` (and ``status=rejected`` when rejected) on an existing item,
    with ``fields`` (the scores summary list views read)."""
    try:
        model_versions.record_gate_decision(
            model_versions_table,
            model_version,
            decision_uri=decision_uri,
            approved=decision.approved,
            at=timestamp,
            extra=fields,
        )
    except model_versions.VersionTransitionError as exc:
        if model_versions.get_version(model_versions_table, model_version) is None:
            # Never create a half item for a version PrepareDataset did not register.
            raise GateError(
                f"ModelVersions has no item for model_version {model_version!r}"
            ) from exc
        raise GateError(str(exc)) from exc
