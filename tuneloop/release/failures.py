"""RecordFailure: a failed run's error and a readable cause, on its ModelVersions item."""

from __future__ import annotations

import json
from typing import Any

from tuneloop.release import model_versions
from tuneloop.release.model_versions import now_iso

MAX_CAUSE_CHARS = 2_000


def readable_cause(cause: str, limit: int = MAX_CAUSE_CHARS) -> str:
    """The useful part of a Step Functions ``Cause``, bounded in length.

    Lambda errors arrive as JSON with ``errorType``/``errorMessage`` and a stack trace;
    SageMaker task errors as the job description with ``FailureReason``.
    """
    text = cause.strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        if parsed.get("errorMessage"):
            kind = parsed.get("errorType")
            text = f"{kind}: {parsed['errorMessage']}" if kind else str(parsed["errorMessage"])
        elif parsed.get("FailureReason"):
            job = parsed.get("TrainingJobName") or parsed.get("ProcessingJobName") or "job"
            text = f"{job}: {parsed['FailureReason']}"
    if len(text) > limit:
        text = f"{text[: limit - 40].rstrip()} … [{len(text) - limit + 40} more characters]"
    return text


def record_failure(
    model_version: str, error: dict[str, Any], *, model_versions_table: str
) -> dict[str, str]:
    """Store why a run failed on its version item; return a summary for the notification."""
    error_name = str(error.get("Error") or "UnknownError")
    cause = readable_cause(str(error.get("Cause") or ""))
    fields = {"error": error_name, "cause": cause, "failed_at": now_iso()}
    # A step after promotion failed (e.g. the notification): a version in production still
    # serves traffic, so it keeps its status and only records the error.
    status = model_versions.fail(model_versions_table, model_version, fields)
    return {
        "model_version": model_version,
        "status": status,
        "error": error_name,
        "cause": cause,
        "message": f"TuneLoop run {model_version} failed: {error_name}: {cause}",
    }
