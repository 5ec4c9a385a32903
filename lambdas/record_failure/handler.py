"""RecordFailure: store a failed run's error and cause on its ModelVersions item.

Event: ``{"model_version" (or "execution_name"), "error": {"Error", "Cause"}}``. Result:
``{"model_version", "status", "error", "cause", "message"}``; ``message`` is one readable
line for the failure notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.release.failures import record_failure

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@dataclass(frozen=True)
class Env:
    model_versions_table: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    model_version = event.get("model_version") or event.get("execution_name")
    if not model_version:
        raise ValueError(f"RecordFailure needs model_version or execution_name: {sorted(event)}")
    result = record_failure(
        str(model_version),
        dict(event.get("error") or {}),
        model_versions_table=env.model_versions_table,
    )
    metrics.add_metric(name="RunFailures", unit=MetricUnit.Count, value=1)
    logger.info("run failure recorded", extra={"failure": result})
    return result
