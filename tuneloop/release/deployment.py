"""Deploy and ConfirmDeployment: put a registered model behind the endpoint, then promote it.

The endpoint's model is made from the model package Register created
(``PrimaryContainer.ModelPackageName``), so the image, artifact and environment that serve
are exactly what the gate approved and the registry records; nothing is rebuilt here.

A new endpoint is created directly. An existing one is updated blue/green: SageMaker brings
up the new fleet and shifts traffic to it as the stage's rollout settings say
(:mod:`tuneloop.release.rollout`: all at once, canary or linear steps, each watched by the
rollback alarms for the wait interval), bakes for ``baking_seconds`` and restores the old
fleet itself if an alarm fires on the way. The state machine then polls the endpoint and
ConfirmDeployment checks which config it ended up on.

The model's container also gets the endpoint name, the model version and the refusal
patterns (``tuneloop.watch.quality``), so its per-request quality metrics carry the right
dimensions; the endpoint config captures a sample of requests and responses
(``DataCaptureConfig``) to ``s3://<curated>/capture/`` under the data lake key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.operations import audit
from tuneloop.release import autoscaling, model_versions
from tuneloop.release.autoscaling import AutoscalingSettings
from tuneloop.release.control import Release, read_production, replace_production
from tuneloop.release.model_versions import get_version, now_iso
from tuneloop.release.rollout import RolloutSettings
from tuneloop.watch.quality import (
    ENDPOINT_NAME_VARIABLE,
    MODEL_VERSION_VARIABLE,
    REFUSAL_PATTERNS_VARIABLE,
)

VARIANT_NAME = "AllTraffic"
MAX_NAME_LENGTH = 63


class EndpointBusyError(RuntimeError):
    """The endpoint is being created, updated or rolled back; try again once it settles."""


class DeploymentRolledBack(RuntimeError):  # noqa: N818 - the contract's error name
    """SageMaker's auto-rollback restored the previous config: the new model is not serving.

    The state machine catches it (States.ALL) and records the run as failed.
    """


class PackageNotApprovedError(RuntimeError):
    """The model package is not approved in the registry: it must not serve."""


@dataclass(frozen=True)
class DataCapture:
    """SageMaker data capture of an endpoint config (docs/monitoring.md, "Data capture")."""

    destination: str
    """``s3://<curated bucket>/capture/``: SageMaker adds <endpoint>/<variant>/<date>/."""
    kms_key_id: str
    sampling_percentage: int

    def config(self) -> dict[str, Any]:
        return {
            "EnableCapture": True,
            "InitialSamplingPercentage": self.sampling_percentage,
            "DestinationS3Uri": self.destination,
            "KmsKeyId": self.kms_key_id,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        }


@dataclass(frozen=True)
class ServingSettings:
    endpoint_name: str
    instance_type: str
    role_arn: str
    rollback_alarm_names: tuple[str, ...] = ()
    data_capture: DataCapture | None = None
    refusal_patterns_json: str = ""
    """``TUNELOOP_REFUSAL_PATTERNS`` for the container; empty: the container's defaults."""
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    """Traffic shifting of an update and the variant's instance count."""
    autoscaling: AutoscalingSettings = field(default_factory=AutoscalingSettings)
    """Target tracking of the variant; suspended here before an update
    (:mod:`tuneloop.release.autoscaling`), restored by ConfirmDeployment."""

    def container_environment(self, model_version: str) -> dict[str, str]:
        """Set on the model over the package's own environment (docs/monitoring.md)."""
        env = {ENDPOINT_NAME_VARIABLE: self.endpoint_name, MODEL_VERSION_VARIABLE: model_version}
        if self.refusal_patterns_json:
            env[REFUSAL_PATTERNS_VARIABLE] = self.refusal_patterns_json
        return env


def resource_name(model_version: str, kind: str) -> str:
    """A unique SageMaker name derived from the model version (retries never collide)."""
    suffix = f"-{kind}-{uuid.uuid4().hex[:8]}"
    stem = model_version[: MAX_NAME_LENGTH - len(suffix)].rstrip("-")
    return f"{stem}{suffix}"


def describe_endpoint(endpoint_name: str) -> dict[str, Any] | None:
    try:
        return dict(aws.sagemaker().describe_endpoint(EndpointName=endpoint_name))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationException" and "Could not find" in error.get(
            "Message", ""
        ):
            return None
        raise


def deployment_config(
    alarm_names: tuple[str, ...], rollout: RolloutSettings | None = None
) -> dict[str, Any]:
    """``UpdateEndpoint``'s ``DeploymentConfig``: the rollout's blue/green policy, rolled
    back by SageMaker when any of ``alarm_names`` goes to ALARM during the update."""
    policy = (rollout or RolloutSettings()).blue_green_update_policy()
    config: dict[str, Any] = {"BlueGreenUpdatePolicy": policy}
    if alarm_names:  # an empty alarm list is rejected by the API
        config["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": name} for name in alarm_names]
        }
    return config


def approved_package(model_package_arn: str) -> dict[str, Any]:
    """The registered package, refused unless the registry says ``Approved``."""
    package = dict(aws.sagemaker().describe_model_package(ModelPackageName=model_package_arn))
    status = package.get("ModelApprovalStatus")
    if status != "Approved":
        raise PackageNotApprovedError(
            f"model package {model_package_arn} is {status}, not Approved; it is not deployed"
        )
    return package


def deploy_model(
    model_version: str,
    model_package_arn: str,
    *,
    serving: ServingSettings,
    model_versions_table: str,
) -> dict[str, str]:
    """Create model (from the package) + endpoint config; create the endpoint or start a
    blue/green update."""
    sagemaker = aws.sagemaker()
    endpoint = describe_endpoint(serving.endpoint_name)
    if endpoint is not None and endpoint["EndpointStatus"] != "InService":
        raise EndpointBusyError(
            f"endpoint {serving.endpoint_name} is {endpoint['EndpointStatus']}; "
            f"{model_version} can be deployed once it is InService again"
        )
    approved_package(model_package_arn)
    model_name = resource_name(model_version, "model")
    sagemaker.create_model(
        ModelName=model_name,
        ExecutionRoleArn=serving.role_arn,
        PrimaryContainer={
            "ModelPackageName": model_package_arn,
            "Environment": serving.container_environment(model_version),
        },
    )
    config_name = resource_name(model_version, "config")
    # Any: the instance type comes from configuration, the stubs want a literal.
    variant: Any = {
        "VariantName": VARIANT_NAME,
        "ModelName": model_name,
        "InstanceType": serving.instance_type,
        "InitialInstanceCount": serving.rollout.instance_count,
        "InitialVariantWeight": 1.0,
    }
    capture: Any = {}
    if serving.data_capture is not None:
        capture["DataCaptureConfig"] = serving.data_capture.config()
    sagemaker.create_endpoint_config(
        EndpointConfigName=config_name, ProductionVariants=[variant], **capture
    )
    if endpoint is None:
        previous = ""
        sagemaker.create_endpoint(
            EndpointName=serving.endpoint_name, EndpointConfigName=config_name
        )
    else:
        previous = str(endpoint["EndpointConfigName"])
        # No scaling activity races the update; ConfirmDeployment restores it once the
        # endpoint is InService again (docs/serving.md, "Autoscaling").
        autoscaling.suspend(serving.endpoint_name, serving.autoscaling)
        sagemaker.update_endpoint(
            EndpointName=serving.endpoint_name,
            EndpointConfigName=config_name,
            DeploymentConfig=deployment_config(  # type: ignore[arg-type]
                serving.rollback_alarm_names, serving.rollout
            ),
        )
    model_versions.start_deploying(
        model_versions_table,
        model_version,
        {
            "model_name": model_name,
            "endpoint_config_name": config_name,
            "endpoint_name": serving.endpoint_name,
            "deploy_started_at": now_iso(),
        },
    )
    return {
        "endpoint_name": serving.endpoint_name,
        "endpoint_config_name": config_name,
        "previous_endpoint_config_name": previous,
    }


@dataclass(frozen=True)
class AuditContext:
    """Where and as whom ConfirmDeployment records the promotion in the audit trail.

    The pipeline's own deployments are ``auto_deploy`` by the function's IAM principal; a
    release run started by a person (``manual``) records ``deploy`` (or ``rollback`` for a
    rollback to a chosen version) with that person as the actor."""

    table: str
    actor: audit.Actor
    action: str = "auto_deploy"
    request_id: str | None = None


def confirm_deployment(
    model_version: str,
    deployment: dict[str, Any],
    *,
    endpoint_name: str,
    control_table: str,
    model_versions_table: str,
    rollback: bool = False,
    audit_context: AuditContext | None = None,
    scaling: AutoscalingSettings | None = None,
) -> dict[str, str]:
    """Promote ``model_version`` to production if the endpoint really serves its config.

    ``rollback``: a person rolled back to this (earlier) version; the version it replaces
    becomes ``rolled_back`` instead of staying deployable, and there is no last-known-good
    until the next deployment (as after an alarm's rollback).

    ``scaling``: once the endpoint is InService on either config, the variant's target
    tracking is registered (first deployment) or restored after Deploy suspended it."""
    expected_config = str(deployment.get("endpoint_config_name", ""))
    if not expected_config:
        raise ValueError(
            f"ConfirmDeployment input lacks deployment.endpoint_config_name: {deployment}"
        )
    endpoint = describe_endpoint(endpoint_name)
    if endpoint is None:
        raise DeploymentRolledBack(f"endpoint {endpoint_name} does not exist")
    serving = str(endpoint.get("EndpointConfigName", ""))
    status = str(endpoint.get("EndpointStatus", ""))
    if status == "InService" and scaling is not None:
        # The update is over either way (promoted below, or SageMaker rolled it back):
        # scaling resumes on the config that serves.
        autoscaling.activate(endpoint_name, scaling)
    if serving != expected_config:
        failure = str(endpoint.get("FailureReason") or "")
        raise DeploymentRolledBack(
            f"endpoint {endpoint_name} serves {serving}, not {expected_config}: the blue/green "
            f"deployment of {model_version} was rolled back (a rollback alarm fired or the "
            "new fleet failed); the previous model keeps serving"
            + (f". FailureReason: {failure}" if failure else "")
        )
    if status != "InService":
        raise EndpointBusyError(f"endpoint {endpoint_name} is {status}, not InService")

    production = read_production(control_table)
    if production is not None and production.current.model_version == model_version:
        # A retried invocation after a successful promotion.
        lkg = production.last_known_good
        return {
            "production_version": model_version,
            "last_known_good_version": lkg.model_version if lkg else "",
        }
    version = get_version(model_versions_table, model_version) or {}
    new = Release(model_version, expected_config, str(version.get("model_data_url", "")))
    previous = production.current if production else None
    promoted_at = now_iso()
    if rollback:
        replace_production(
            control_table,
            new,
            last_known_good=None,
            expected=previous,
            extra={
                "last_rollback": {
                    "incident": f"manual@{promoted_at}",
                    "from_version": previous.model_version if previous else "",
                    "at": promoted_at,
                }
            },
        )
    else:
        replace_production(control_table, new, last_known_good=previous, expected=previous)

    if rollback and previous is not None:
        model_versions.roll_back(
            model_versions_table,
            previous.model_version,
            {"rolled_back_at": promoted_at, "rollback_alarm": "", "rolled_back_to": model_version},
        )
    model_versions.promote(model_versions_table, model_version, {"promoted_at": promoted_at})
    if previous is not None and not rollback:
        model_versions.supersede(
            model_versions_table,
            previous.model_version,
            {"superseded_by": model_version, "superseded_at": promoted_at},
        )
    if audit_context is not None:
        audit.append(
            audit_context.table,
            audit_context.actor,
            audit_context.action,
            # A rollback's target is the version taken out, as on the alarm path.
            previous.model_version if rollback and previous else model_version,
            before={
                "model_version": previous.model_version if previous else "",
                "endpoint_config_name": previous.endpoint_config_name if previous else "",
            },
            after={
                "model_version": model_version,
                "endpoint_config_name": expected_config,
                "endpoint_name": endpoint_name,
            },
            request_id=audit_context.request_id,
        )
    return {
        "production_version": model_version,
        "last_known_good_version": previous.model_version if previous else "",
    }
