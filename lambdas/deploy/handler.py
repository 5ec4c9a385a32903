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

A model line's run (or a person's release of a line) adds ``"model_line": "<name>"`` (one of
``MODEL_LINES``; absent or ``""``: the endpoint's one model). Deploy then points the line's
adapter component at the package's adapter (``tuneloop.release.model_lines.deploy_line``):
no endpoint update, no rollout or autoscaling. The line's own quality alarms
(``LINE_QUALITY_ALARMS``) are re-bounded from the line's outgoing production version
(``production#<line>``) on its component's metrics, as the endpoint's are. Result:
``{"endpoint_name", "inference_component", "artifact_url", "previous_artifact_url",
"model_line"}`` (``previous_artifact_url`` is ``""`` when the
component was created). The freeze holds a line's automatic deploy as it holds the
endpoint's, with ``"model_line"`` added to the held result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.model_line_settings import BASE_COMPONENT, ModelLines
from tuneloop.operations.freeze import read_freeze
from tuneloop.release.autoscaling import AutoscalingSettings
from tuneloop.release.control import production_key, read_production
from tuneloop.release.deployment import DataCapture, ServingSettings, deploy_model
from tuneloop.release.model_lines import LineServing, deploy_line
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
    model_lines: str = "[]"
    """``ModelLines.to_json()`` of the stage: the lines an event may name."""
    line_quality_alarms: str = "{}"
    """JSON: model line → {quality alarm kind → alarm name} of the line's component."""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    model_version = str(event["model_version"])
    model_line = str(event.get("model_line") or "")
    if model_line:  # a typo must fail here, not create a component of that name
        ModelLines.from_json(env.model_lines).get(model_line)
    if not event.get("manual"):
        freeze = read_freeze(env.control_table)
        if freeze.frozen:
            reason = (
                f"deployment frozen by {freeze.by or '?'} at {freeze.at or '?'}: "
                f"{freeze.reason or 'no reason given'}; {model_version} stays registered "
                f"(`tuneloop deploy {model_version}` deploys it)"
            )
            logger.info("deployment held", extra={"model_version": model_version})
            held: dict[str, Any] = {
                "held": True,
                "reason": reason,
                "endpoint_name": env.endpoint_name,
            }
            return {**held, "model_line": model_line} if model_line else held
    if model_line:
        return _deploy_line(env, model_version, str(event["model_package_arn"]), model_line)
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


def _deploy_line(env: Env, model_version: str, package_arn: str, model_line: str) -> dict[str, Any]:
    """Point the line's component at the version and re-bound the line's quality alarms
    from the line's outgoing version (read before the deploy, as for the endpoint)."""
    production = read_production(env.control_table, production_key(model_line))
    result = {
        **deploy_line(
            model_version,
            package_arn,
            line=LineServing(env.endpoint_name, BASE_COMPONENT, model_line),
            model_versions_table=env.model_versions_table,
        ),
        "model_line": model_line,
    }
    logger.info("line deployment started", extra={"deployment": result})
    outgoing = production.current.model_version if production else ""
    bounds = set_quality_thresholds(
        endpoint_name=env.endpoint_name,
        outgoing_version=outgoing if outgoing != model_version else "",
        alarm_names=json.loads(env.line_quality_alarms).get(model_line, {}),
        settings=QualitySettings.from_json(env.quality_settings),
        inference_component=model_line,  # a line's component is named after it
    )
    logger.info(
        "line quality alarm bounds",
        extra={"bounds": bounds, "baseline_version": outgoing, "model_line": model_line},
    )
    return result
