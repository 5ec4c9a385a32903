"""Rollback: a CloudWatch alarm, delivered by SNS, restores the last-known-good model.

Event: an SNS event whose ``Records[0].Sns.Message`` is the alarm notification JSON, or a
person's manual rollback (``tuneloop rollback``, the console):
``{"manual": true, "actor": {"name", "kind", "source"}, "reason", "request_id"}``.
Result: ``{"action": "rolled_back" | "none" | "ignored", "reason", "alarm_name",
"endpoint_name"}`` plus ``from_version``, ``to_version``, ``endpoint_config_name`` when
rolled back, and ``scaling`` (``restored`` | ``suspended``) when the variant autoscales: its
scaling is suspended for the update and restored once the endpoint is InService again,
waiting at most the function's time left (docs/serving.md, "Autoscaling").

Model lines (docs/serving.md, "Model lines"): an alarm of a line
(``MODEL_LINE_ALARMS``: alarm name → line; else its ``InferenceComponentName`` dimension)
rolls back that line's adapter component only (``tuneloop.release.line_rollback``), and a
manual event with ``"model_line": "<name>"`` (one of ``MODEL_LINES``) does the same for a
person. Result: the shape above with ``"model_line"`` added, and ``inference_component``
instead of ``endpoint_config_name`` when rolled back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.model_line_settings import ModelLines
from tuneloop.release.autoscaling import AutoscalingSettings
from tuneloop.release.line_rollback import (
    line_of_alarm,
    roll_back_line_manually,
    roll_back_line_on_alarm,
)
from tuneloop.release.rollback import (
    AlarmNotice,
    ManualRollback,
    RollbackSettings,
    roll_back_manually,
    roll_back_on_alarm,
)

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@dataclass(frozen=True)
class Env:
    control_table: str
    model_versions_table: str
    endpoint_name: str
    notify_topic_arn: str
    audit_table: str
    autoscaling_settings: str
    """``AutoscalingSettings.to_json()``: suspended for the update, then restored."""
    incidents_table: str = ""
    max_automatic_rollbacks: int = 0
    rollback_window_hours: int = 24
    model_lines: str = "[]"
    """``ModelLines.to_json()`` of the stage."""
    model_line_alarms: str = "{}"
    """JSON: alarm name → the model line whose component it watches."""


# A person's rollback is a synchronous invoke (the CLI, the console): it waits less than an
# SDK's read timeout; an alarm's (asynchronous, from SNS) may use the function's time.
MANUAL_SCALING_WAIT_SECONDS = 40.0
TIME_LEFT_MARGIN_SECONDS = 20.0


def scaling_wait_seconds(event: dict[str, Any], context: LambdaContext) -> float:
    """How long the rollback waits for InService before restoring autoscaling."""
    left = context.get_remaining_time_in_millis() / 1000 - TIME_LEFT_MARGIN_SECONDS
    if ManualRollback.is_manual(event):
        left = min(left, MANUAL_SCALING_WAIT_SECONDS)
    return max(0.0, left)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    settings = RollbackSettings(
        endpoint_name=env.endpoint_name,
        control_table=env.control_table,
        model_versions_table=env.model_versions_table,
        topic_arn=env.notify_topic_arn,
        audit_table=env.audit_table,
        incidents_table=env.incidents_table,
        max_automatic_rollbacks=env.max_automatic_rollbacks,
        rollback_window_hours=env.rollback_window_hours,
        autoscaling=AutoscalingSettings.from_json(env.autoscaling_settings),
        scaling_wait_seconds=scaling_wait_seconds(event, context),
    )
    lines = ModelLines.from_json(env.model_lines)
    if ManualRollback.is_manual(event):
        request = ManualRollback.from_event(event)
        if request.model_line:
            lines.get(request.model_line)  # an unknown line fails, naming the lines
            result = roll_back_line_manually(request, settings)
        else:
            result = roll_back_manually(request, settings)
    else:
        alarm = AlarmNotice.from_sns_event(event)
        line = line_of_alarm(alarm, json.loads(env.model_line_alarms or "{}"), lines.names)
        if line:
            result = roll_back_line_on_alarm(alarm, line, settings)
        else:
            result = roll_back_on_alarm(alarm, settings)
    rolled_back = result["action"] == "rolled_back"
    metrics.add_metric(name="Rollbacks", unit=MetricUnit.Count, value=int(rolled_back))
    logger.info("alarm handled", extra={"rollback": result})
    return result
