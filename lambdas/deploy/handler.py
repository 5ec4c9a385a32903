"""Deploy: SageMaker model + endpoint config; create the endpoint or update it blue/green.

The model is the package Register created (``ModelPackageName``): its image, artifact and
environment (our server on the Hugging Face DLC, or LMI with the repacked adapter) are what
the gate approved; Deploy builds nothing.

Event: ``{"model_version", "model_package_arn"}`` (``$.registration.model_package_arn``), and
``"manual": true`` from the release state machine (a person's deploy or rollback).
Result (``$.deployment``):
``{"endpoint_name", "endpoint_config_name", "previous_endpoint_config_name"}``
(``previous_endpoint_config_name`` is ``""`` when the endpoint was created); while the
pipeline is frozen (tuneloop/operations/freeze.py) an automatic deploy changes nothing and
returns ``{"held": true, "reason", "endpoint_name"}``, which ends the run as held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.operations.freeze import read_freeze
from tuneloop.release.deployment import ServingSettings, deploy_model

logger = Logger()
tracer = Tracer()


@dataclass(frozen=True)
class Env:
    control_table: str
    model_versions_table: str
    endpoint_name: str
    serving_instance_type: str
    sagemaker_role_arn: str
    rollback_alarm_names: tuple[str, ...]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    model_version = str(event["model_version"])
    if not event.get("manual"):
        freeze = read_freeze(env.control_table)
        if freeze.frozen:
            reason = (
                f"deployment frozen by {freeze.by or '?'} at {freeze.at or '?'}: "
                f"{freeze.reason or 'no reason given'}; {model_version} stays registered "
                f"(`tuneloop deploy {model_version}` deploys it)"
            )
            logger.info("deployment held", extra={"model_version": model_version})
            return {"held": True, "reason": reason, "endpoint_name": env.endpoint_name}
    result = deploy_model(
        model_version,
        str(event["model_package_arn"]),
        serving=ServingSettings(
            endpoint_name=env.endpoint_name,
            instance_type=env.serving_instance_type,
            role_arn=env.sagemaker_role_arn,
            rollback_alarm_names=env.rollback_alarm_names,
        ),
        model_versions_table=env.model_versions_table,
    )
    logger.info("deployment started", extra={"deployment": result})
    return result
