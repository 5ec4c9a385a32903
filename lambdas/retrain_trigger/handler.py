"""RetrainTrigger: on a schedule or by hand, start a run if enough new records arrived.

Event: an EventBridge scheduled event, ``{"trigger": "schedule"}``, or
``{"force": true}`` (manual: start regardless of the threshold, still one run at a time).
With model lines (``MODEL_LINES``) a manual run names its line, ``{"force": true,
"model_line": "support"}``; the others train the line with the most pending records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.model_line_settings import ModelLines
from tuneloop.retrain import start_retrain_if_due

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@dataclass(frozen=True)
class Env:
    control_table: str
    state_machine_arn: str
    retrain_threshold: int
    # ModelLines.to_json() of the stage ("[]": no lines, one model).
    model_lines: str = "[]"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    force = event.get("force") is True
    trigger = "manual" if force else str(event.get("trigger") or "schedule")
    outcome = start_retrain_if_due(
        control_table=env.control_table,
        state_machine_arn=env.state_machine_arn,
        threshold=env.retrain_threshold,
        trigger=trigger,
        force=force,
        model_lines=ModelLines.from_json(env.model_lines).names,
        model_line=str(event.get("model_line") or ""),
    )
    metrics.add_metric(name="RetrainRunsStarted", unit=MetricUnit.Count, value=int(outcome.started))
    logger.info("retrain trigger", extra={"outcome": outcome.as_dict()})
    return outcome.as_dict()
