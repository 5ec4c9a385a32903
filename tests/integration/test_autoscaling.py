"""The endpoint variant's autoscaling around deployments (moto's Application Auto Scaling).

ConfirmDeployment registers the target and its policy once the endpoint is InService; Deploy
suspends dynamic scaling before an update; ConfirmDeployment restores it, also when
SageMaker rolled the update back; Rollback suspends and restores around its own update.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas.confirm_deployment.handler import handler as confirm
from lambdas.deploy.handler import handler as deploy
from lambdas.register.handler import handler as register
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    handler_env,
    lambda_context,
    platform,
    start_training,
)
from tests.integration.sagemaker_stubs import endpoint_description
from tests.integration.test_confirm_deployment import V2_DATA, deploy_v1
from tuneloop import aws
from tuneloop.release import autoscaling
from tuneloop.release.autoscaling import AutoscalingSettings
from tuneloop.release.deployment import DeploymentRolledBack

__all__ = ["aws_credentials", "platform"]

SETTINGS = AutoscalingSettings(
    enabled=True,
    min_instances=1,
    max_instances=3,
    target_value=12.0,
    scale_in_cooldown_seconds=30,
    scale_out_cooldown_seconds=5,
)
NOT_SUSPENDED = {
    "DynamicScalingInSuspended": False,
    "DynamicScalingOutSuspended": False,
    "ScheduledScalingSuspended": False,
}


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    for function in ("register", "deploy", "confirm_deployment"):
        for name, value in handler_env(platform, function).items():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTOSCALING_SETTINGS", SETTINGS.to_json())
    start_training(platform, "v0001")
    return platform


def target(platform: Platform) -> dict[str, Any]:
    found = autoscaling.scalable_target(platform.endpoint_name)
    assert found is not None
    return found


def test_the_first_confirmed_deployment_registers_target_tracking(env: Platform) -> None:
    # Given v0001 deployed (moto's endpoint is InService at once)
    deployment = deploy_v1()
    assert autoscaling.scalable_target(env.endpoint_name) is None  # nothing before InService

    # When ConfirmDeployment promotes it
    confirm({"model_version": "v0001", "deployment": deployment}, lambda_context())

    # Then the variant is a scalable target within min..max, scaling on, with the policy
    registered = target(env)
    assert registered["ResourceId"] == f"endpoint/{env.endpoint_name}/variant/AllTraffic"
    assert (registered["MinCapacity"], registered["MaxCapacity"]) == (1, 3)
    assert registered["SuspendedState"] == NOT_SUSPENDED
    (policy,) = aws.client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=registered["ResourceId"]
    )["ScalingPolicies"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"] == SETTINGS.policy_configuration()


def test_deploy_suspends_scaling_before_the_update_and_confirm_restores_it(
    env: Platform,
) -> None:
    # Given v0001 serving with autoscaling on, and v0002 registered
    confirm({"model_version": "v0001", "deployment": deploy_v1()}, lambda_context())
    start_training(env, "v0002")
    registration = register({"model_version": "v0002", "model_data": V2_DATA}, lambda_context())
    order: list[str] = []
    for client in (aws.sagemaker(), aws.client("application-autoscaling")):
        client.meta.events.register(
            "provide-client-params.*.*", lambda model, **_: order.append(model.name)
        )

    # When Deploy starts v0002's update (plain moto has no UpdateEndpoint and fails once
    # asked; after the local platform's patches in the same process it answers)
    with contextlib.suppress(NotImplementedError):
        deploy(
            {"model_version": "v0002", "model_package_arn": registration["model_package_arn"]},
            lambda_context(),
        )

    # Then dynamic scaling was suspended before UpdateEndpoint was called
    assert order.index("RegisterScalableTarget") < order.index("UpdateEndpoint")
    assert target(env)["SuspendedState"]["DynamicScalingOutSuspended"] is True
    assert target(env)["SuspendedState"]["DynamicScalingInSuspended"] is True
    sagemaker = aws.sagemaker()

    # And once the endpoint is InService again, ConfirmDeployment restores it
    with Stubber(sagemaker) as stub:
        stub.add_response(
            "describe_endpoint",
            endpoint_description(env.endpoint_name, "v1-config"),
            {"EndpointName": env.endpoint_name},
        )
        # SageMaker rolled the update back: v1-config serves, not v2-config
        with pytest.raises(DeploymentRolledBack):
            confirm(
                {"model_version": "v0002", "deployment": {"endpoint_config_name": "v2-config"}},
                lambda_context(),
            )
    assert target(env)["SuspendedState"] == NOT_SUSPENDED
    assert (target(env)["MinCapacity"], target(env)["MaxCapacity"]) == (1, 3)


def test_an_endpoint_still_updating_keeps_scaling_suspended(env: Platform) -> None:
    autoscaling.activate(env.endpoint_name, SETTINGS)
    autoscaling.suspend(env.endpoint_name, SETTINGS)
    with Stubber(aws.sagemaker()) as stub:
        stub.add_response(
            "describe_endpoint",
            endpoint_description(env.endpoint_name, "v1-config", status="Updating"),
            {"EndpointName": env.endpoint_name},
        )
        with pytest.raises(DeploymentRolledBack):  # serves v1-config, still updating
            confirm(
                {"model_version": "v0002", "deployment": {"endpoint_config_name": "v2-config"}},
                lambda_context(),
            )
    assert target(env)["SuspendedState"]["DynamicScalingInSuspended"] is True


def test_suspend_without_a_target_registers_nothing(env: Platform) -> None:
    # Given the first deployment (no target yet), or autoscaling off
    assert autoscaling.suspend(env.endpoint_name, SETTINGS) is False
    autoscaling.activate(env.endpoint_name, SETTINGS)
    assert autoscaling.suspend(env.endpoint_name, AutoscalingSettings(enabled=False)) is False
    assert target(env)["SuspendedState"] == NOT_SUSPENDED


def test_rollback_restores_scaling_once_the_endpoint_is_in_service(env: Platform) -> None:
    # Given the rollback's update suspended scaling
    autoscaling.activate(env.endpoint_name, SETTINGS)
    autoscaling.suspend(env.endpoint_name, SETTINGS)
    states = iter(["Updating", "Updating", "InService"])

    def describe(name: str) -> dict[str, Any]:
        return endpoint_description(name, "v1-config", status=next(states))

    # When it waits for InService, polling
    restored = autoscaling.activate_when_in_service(
        env.endpoint_name, SETTINGS, wait_seconds=5, describe=describe, poll_seconds=0.01
    )

    # Then scaling is on again
    assert restored is True
    assert target(env)["SuspendedState"] == NOT_SUSPENDED


def test_rollback_leaves_scaling_suspended_if_the_endpoint_does_not_settle(env: Platform) -> None:
    autoscaling.activate(env.endpoint_name, SETTINGS)
    autoscaling.suspend(env.endpoint_name, SETTINGS)
    restored = autoscaling.activate_when_in_service(
        env.endpoint_name,
        SETTINGS,
        wait_seconds=0.05,
        describe=lambda name: endpoint_description(name, "v1-config", status="Updating"),
        poll_seconds=0.01,
    )
    assert restored is False
    assert target(env)["SuspendedState"]["DynamicScalingOutSuspended"] is True
