"""DriftCheck: captured prompts of one window against the production model's training data.

Event (the EventBridge Scheduler schedule, or ``tuneloop watch drift``):
``{"trigger": "scheduled", "scheduled_time": "2026-12-03T06:00:00Z"}`` (``"manual"`` and an
optional ``"window_hours"`` from the CLI) → the verdict, ``report.html`` and ``result.json``
under ``s3://<curated>/watch/drift/<endpoint>/<window end>/``, the ``TuneLoop/Drift``
metrics and, with ``retrain_on_drift``, a data drop (``tuneloop.watch.drift_service``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.watch.drift_service import DriftCheckRequest, DriftLocations, check_drift
from tuneloop.watch.drift_settings import DriftCheckSettings

logger = Logger()
tracer = Tracer()


@dataclass(frozen=True)
class Env:
    curated_bucket: str
    raw_bucket: str
    control_table: str
    model_versions_table: str
    endpoint_name: str
    drift_check_settings: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    result = check_drift(
        DriftCheckRequest.parse(event),
        where=DriftLocations(
            curated_bucket=env.curated_bucket,
            raw_bucket=env.raw_bucket,
            control_table=env.control_table,
            model_versions_table=env.model_versions_table,
            endpoint_name=env.endpoint_name,
        ),
        settings=DriftCheckSettings.from_json(env.drift_check_settings),
    )
    summary = {k: result[k] for k in ("status", "summary", "report_uri", "retrain_drop")}
    logger.info("drift check done", extra={"result": summary})
    return result
