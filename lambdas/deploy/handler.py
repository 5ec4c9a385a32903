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

The update shifts traffic as ``ROLLOUT_SETTINGS`` says (all at once, canary or linear,
``tuneloop.release.rollout``), and the variant gets its ``instance_count``. Before an update
the variant's autoscaling (``AUTOSCALING_SETTINGS``) is suspended; ConfirmDeployment
restores it.

Deploy also sets each quality alarm's bound for the version going live from the outgoing
version's rates (``tuneloop.watch.quality_thresholds``, docs/monitoring.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.operations.freeze import read_freeze
from tuneloop.release.autoscaling import AutoscalingSettings
from tuneloop.release.control import read_production
from tuneloop.release.deployment import DataCapture, ServingSettings, deploy_model
from tuneloop.release.rollout import RolloutSettings
from tuneloop.watch.quality import QualitySettings
from tuneloop.watch.quality_thresholds import set_quality_thresholds

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
    quality_settings: str
    """``QualitySettings.to_json()`` of the stage."""
    quality_alarms: str
    """JSON: quality alarm kind (empty, truncated, refusal) → alarm name."""
    capture_destination: str
    data_lake_key_arn: str
    rollout_settings: str
    """``RolloutSettings.to_json()`` of the stage."""
    autoscaling_settings: str
    """``AutoscalingSettings.to_json()`` of the stage: suspended before an update."""


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
    quality = QualitySettings.from_json(env.quality_settings)
    production = read_production(env.control_table)
    result = deploy_model(
        model_version,
        str(event["model_package_arn"]),
        serving=ServingSettings(
            endpoint_name=env.endpoint_name,
            instance_type=env.serving_instance_type,
            role_arn=env.sagemaker_role_arn,
            rollback_alarm_names=env.rollback_alarm_names,
            data_capture=DataCapture(
                destination=env.capture_destination,
                kms_key_id=env.data_lake_key_arn,
                sampling_percentage=quality.capture_sampling_percentage,
            ),
            refusal_patterns_json=quality.refusal_patterns_json(),
            rollout=RolloutSettings.from_json(env.rollout_settings),
            autoscaling=AutoscalingSettings.from_json(env.autoscaling_settings),
        ),
        model_versions_table=env.model_versions_table,
    )
    logger.info("deployment started", extra={"deployment": result})
    outgoing = production.current.model_version if production else ""
    bounds = set_quality_thresholds(
        endpoint_name=env.endpoint_name,
        outgoing_version=outgoing if outgoing != model_version else "",
        alarm_names=json.loads(env.quality_alarms),
        settings=quality,
    )
    logger.info("quality alarm bounds", extra={"bounds": bounds, "baseline_version": outgoing})
    return result
