"""ConfirmDeployment: promote the new version to production, keeping last-known-good.

Event: ``{"model_version", "deployment": <Deploy result>}``; a release run started by a person
adds ``"manual": true``, ``"actor": {"name", "kind", "source"}``, ``"request_id"`` and
``"rollback"`` (a rollback to a chosen version). Result (``$.confirmation``):
``{"production_version", "last_known_good_version"}`` (``""`` when there was none). Raises
``DeploymentRolledBack`` when the endpoint serves another config.

Once the endpoint is InService (on the new config, or the old one after SageMaker's
auto-rollback) the variant's target tracking is registered or restored
(``AUTOSCALING_SETTINGS``, ``tuneloop.release.autoscaling``).

Each promotion appends one audit record: ``auto_deploy`` by this function's IAM principal,
or ``deploy`` / ``rollback`` by the person in the event.

With ``"model_line": "<name>"`` (one of ``MODEL_LINES``) the line's adapter component is
checked instead of the endpoint and the version is promoted in the line's Control item
(``tuneloop.release.model_lines.confirm_line``); same result shape. Raises
``EndpointBusyError`` while the component is Creating or Updating (the state machine retries
it every poll interval) and ``DeploymentRolledBack`` when it serves another artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.model_line_settings import BASE_COMPONENT, ModelLines
from tuneloop.operations.audit import Actor
from tuneloop.release.autoscaling import AutoscalingSettings
from tuneloop.release.deployment import AuditContext, confirm_deployment
from tuneloop.release.model_lines import LineServing, confirm_line

logger = Logger()
tracer = Tracer()


@dataclass(frozen=True)
class Env:
    control_table: str
    model_versions_table: str
    endpoint_name: str
    audit_table: str
    autoscaling_settings: str
    """``AutoscalingSettings.to_json()``: registered or restored once InService."""
    model_lines: str = "[]"
    """``ModelLines.to_json()`` of the stage: the lines an event may name."""


def audit_context(event: dict[str, Any], audit_table: str) -> AuditContext:
    """Who the audit record names: the person of a manual release, else this function."""
    if event.get("manual") and isinstance(event.get("actor"), dict):
        who = event["actor"]
        actor = Actor(name=str(who["name"]), kind=str(who["kind"]), source=str(who["source"]))
        action = "rollback" if event.get("rollback") else "deploy"
        return AuditContext(audit_table, actor, action, event.get("request_id") or None)
    return AuditContext(audit_table, Actor.from_iam("pipeline"), "auto_deploy")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    model_line = str(event.get("model_line") or "")
    if model_line:
        ModelLines.from_json(env.model_lines).get(model_line)
        result = confirm_line(
            str(event["model_version"]),
            dict(event.get("deployment") or {}),
            line=LineServing(env.endpoint_name, BASE_COMPONENT, model_line),
            control_table=env.control_table,
            model_versions_table=env.model_versions_table,
            rollback=bool(event.get("rollback", False)),
            audit_context=audit_context(event, env.audit_table),
        )
        logger.info("line deployment confirmed", extra={"confirmation": result})
        return result
    result = confirm_deployment(
        str(event["model_version"]),
        dict(event.get("deployment") or {}),
        endpoint_name=env.endpoint_name,
        control_table=env.control_table,
        model_versions_table=env.model_versions_table,
        rollback=bool(event.get("rollback", False)),
        audit_context=audit_context(event, env.audit_table),
        scaling=AutoscalingSettings.from_json(env.autoscaling_settings),
    )
    logger.info("deployment confirmed", extra={"confirmation": result})
    return result
