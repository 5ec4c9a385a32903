"""Deploy: SageMaker model + endpoint config; create the endpoint or update it blue/green.

The model is the package Register created (``ModelPackageName``): its image, artifact and
environment (our server on the Hugging Face DLC, or LMI with the repacked adapter) are what
the gate approved; Deploy builds nothing.

Event: ``{"model_version", "model_package_arn"}`` (``$.registration.model_package_arn``).
Result (``$.deployment``):
``{"endpoint_name", "endpoint_config_name", "previous_endpoint_config_name"}``
(``previous_endpoint_config_name`` is ``""`` when the endpoint was created).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
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
    result = deploy_model(
        str(event["model_version"]),
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
