"""ConfirmDeployment: promote the new version to production, keeping last-known-good.

Event: ``{"model_version", "deployment": <Deploy result>}``. Result (``$.confirmation``):
``{"production_version", "last_known_good_version"}`` (``""`` when there was none). Raises
``DeploymentRolledBack`` when the endpoint serves another config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.release.deployment import confirm_deployment

logger = Logger()
tracer = Tracer()


@dataclass(frozen=True)
class Env:
    control_table: str
    model_versions_table: str
    endpoint_name: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    result = confirm_deployment(
        str(event["model_version"]),
        dict(event.get("deployment") or {}),
        endpoint_name=env.endpoint_name,
        control_table=env.control_table,
        model_versions_table=env.model_versions_table,
    )
    logger.info("deployment confirmed", extra={"confirmation": result})
    return result
