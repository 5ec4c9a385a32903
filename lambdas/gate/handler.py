"""Gate: champion-vs-challenger decision on the Evaluate job's report.

Input (state machine Gate row): ``{"model_version", "evaluation": {"job_name",
"output_path"}, "champion_version", "benchmark_versions", "model_line"}``. Output:
``{"approved", "decision_s3_uri", "summary"}``. The rules live in ``tuneloop.gating``; the
policy is Control's ``gate_policy`` item when an admin set one, else ``GATE_POLICY`` (the
stage's); for a model line, its ``gate_policy#<line>`` item, else the line's policy in
``MODEL_LINES`` (its own, else the stage's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop import aws
from tuneloop.envmodel import load_env
from tuneloop.gating.service import GateEvent, run_gate
from tuneloop.operations.gate_policy import run_policy
from tuneloop.run_line import requested_line, run_line

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@dataclass(frozen=True)
class Env:
    artifacts_bucket: str
    model_versions_table: str
    control_table: str
    gate_policy: str
    # ModelLines.to_json() of the stage ("[]": no lines).
    model_lines: str = "[]"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    line = run_line(env.model_lines, requested_line(event))
    policy = run_policy(env.control_table, line, env.gate_policy)
    gate_event = GateEvent.parse(event)
    result = run_gate(
        gate_event,
        policy,
        artifacts_bucket=env.artifacts_bucket,
        model_versions_table=env.model_versions_table,
        s3=aws.s3(),  # created lazily, on first use, so AWS_ENDPOINT_URL and moto apply
    )
    approved = bool(result["approved"])
    metrics.add_metric(name="CandidatesApproved", unit=MetricUnit.Count, value=int(approved))
    metrics.add_metric(name="CandidatesRejected", unit=MetricUnit.Count, value=int(not approved))
    logger.info(
        "gate decision",
        extra={
            "model_version": gate_event.model_version,
            "model_line": line.name if line else "",
            "summary": result["summary"],
        },
    )
    return result
