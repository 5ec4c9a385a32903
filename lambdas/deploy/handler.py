"""Deploy: SageMaker model + endpoint config; create the endpoint or update it blue/green.

``SERVING_BACKEND`` picks the container: ``tuneloop`` (our ``inference.py`` on the Hugging
Face DLC, ``SERVING_IMAGE_URI``) or ``lmi`` (AWS's LMI/vLLM image with the LoRA adapter; the
artifact is repacked to ``ARTIFACTS_BUCKET``/models/, options from ``LMI_OPTIONS``).

Event: ``{"model_version", "model_data"}``. Result (``$.deployment``):
``{"endpoint_name", "endpoint_config_name", "previous_endpoint_config_name"}``
(``previous_endpoint_config_name`` is ``""`` when the endpoint was created).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.deployment import ServingSettings, deploy_model
from tuneloop.envmodel import load_env
from tuneloop.lmi import LmiSettings

logger = Logger()


@dataclass(frozen=True)
class Env:
    control_table: str
    model_versions_table: str
    endpoint_name: str
    serving_image_uri: str
    serving_instance_type: str
    sagemaker_role_arn: str
    rollback_alarm_names: tuple[str, ...]
    serving_backend: str = "tuneloop"
    artifacts_bucket: str = ""
    lmi_options: str = "{}"


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    result = deploy_model(
        str(event["model_version"]),
        str(event["model_data"]),
        serving=ServingSettings(
            endpoint_name=env.endpoint_name,
            image_uri=env.serving_image_uri,
            instance_type=env.serving_instance_type,
            role_arn=env.sagemaker_role_arn,
            rollback_alarm_names=env.rollback_alarm_names,
            backend=env.serving_backend,
            artifacts_bucket=env.artifacts_bucket,
            lmi=LmiSettings.from_json(env.lmi_options),
        ),
        model_versions_table=env.model_versions_table,
    )
    logger.info("deployment started", extra={"deployment": result})
    return result
