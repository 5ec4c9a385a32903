"""Incidents: every alarm notification on the two SNS topics opens or updates an incident.

Event: an SNS event (the notify topic or the alarm topic). A record whose message is a
CloudWatch alarm notification in ALARM opens an incident with its context and announces it;
OK adds to the alarm's open incident; other messages are ignored.
Result: ``{"results": [{"action": "opened" | "duplicate" | "updated" | "ignored", ...}]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.incidents.respond import ResponseSettings, handle_event
from tuneloop.operations.names import PlatformNames

logger = Logger()
tracer = Tracer()


@dataclass(frozen=True)
class Env:
    platform_names: str  # JSON: tuneloop.operations.names.PlatformNames fields
    incidents_table: str
    notify_topic_arn: str
    alarm_topic_arn: str
    console_url: str = ""
    metric_minutes_before: int = 30
    webhook_secret_name: str = ""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    settings = ResponseSettings(
        names=PlatformNames(**json.loads(env.platform_names)),
        incidents_table=env.incidents_table,
        notify_topic_arn=env.notify_topic_arn,
        alarm_topic_arn=env.alarm_topic_arn,
        console_url=env.console_url,
        metric_minutes_before=env.metric_minutes_before,
        webhook_secret_name=env.webhook_secret_name,
    )
    results = handle_event(event, settings)
    logger.info("alarm notifications handled", extra={"results": results})
    return {"results": results}
