"""Connector: pull one SQL table or JSON API into data drops in the raw bucket.

Event (EventBridge Scheduler, or by hand): ``{"connector": "<name>"}``. Each function runs
one connector, whose settings are the ``CONNECTOR`` variable (JSON, docs/connectors.md);
the name in the event must match it, so a mis-wired schedule fails instead of pulling
the wrong source. Returns ``{"connector", "run_id", "rows", "objects", "watermark", "retries",
"complete"}`` (``complete`` false: a SQL run stopped before its timeout; the next one goes on).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.connectors import connector_from_dict, run_connector
from tuneloop.envmodel import load_env

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# The lease outlives the invocation a little, so a retry of a timed-out run waits for it.
LEASE_MARGIN_SECONDS = 60
STOP_BEFORE_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Env:
    raw_bucket: str
    control_table: str
    connector: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    settings = connector_from_dict(json.loads(env.connector), "CONNECTOR")
    requested = str(event.get("connector") or settings.name)
    if requested != settings.name:
        raise ValueError(
            f"event names connector {requested!r}, but this function runs {settings.name!r}"
        )
    remaining = context.get_remaining_time_in_millis() / 1000
    result = run_connector(
        settings,
        raw_bucket=env.raw_bucket,
        control_table=env.control_table,
        lease_seconds=int(remaining) + LEASE_MARGIN_SECONDS,
        # Stop pulling early enough to write the last object and record the run.
        deadline=time.monotonic() + max(remaining - STOP_BEFORE_TIMEOUT_SECONDS, 0),
    )
    # One service for every connector function: the connector's name tells them apart.
    metrics.add_dimension(name="connector", value=settings.name)
    metrics.add_metric(name="ConnectorRows", unit=MetricUnit.Count, value=result.rows)
    metrics.add_metric(name="ConnectorObjects", unit=MetricUnit.Count, value=len(result.objects))
    logger.info("connector run", extra={"run": result.as_dict()})
    return result.as_dict()
