"""ConfirmDeployment: promote to production, keep last-known-good, detect a rollback."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas.confirm_deployment.handler import handler
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
from tuneloop import aws
from tuneloop.operations import audit
from tuneloop.release.control import ProductionChangedError, Release, replace_production
from tuneloop.release.deployment import DeploymentRolledBack

__all__ = ["aws_credentials", "platform"]

V1_DATA = "s3://tuneloop-artifacts/jobs/v0001-train/output/model.tar.gz"
V2_DATA = "s3://tuneloop-artifacts/jobs/v0002-train/output/model.tar.gz"


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    for name, value in {
        **handler_env(platform, "register"),
        **handler_env(platform, "deploy"),
        **handler_env(platform, "confirm_deployment"),
    }.items():
        monkeypatch.setenv(name, value)
    start_training(platform, "v0001")
    return platform


def control(platform: Platform) -> dict[str, Any]:
    return aws.table(platform.control_table).get_item(Key={"key": "production"})["Item"]


def status(platform: Platform, model_version: str) -> str:
    item = aws.table(platform.model_versions_table).get_item(Key={"model_version": model_version})
    return str(item["Item"]["status"])


def deploy_v1() -> dict[str, str]:
    """Register v0001 (its lineage names the trained artifact), then Deploy its package."""
    registration = register({"model_version": "v0001", "model_data": V1_DATA}, lambda_context())
    return dict(
        deploy(
            {"model_version": "v0001", "model_package_arn": registration["model_package_arn"]},
            lambda_context(),
        )
    )


def promote_v1(platform: Platform) -> dict[str, str]:
    deployment = deploy_v1()
    handler({"model_version": "v0001", "deployment": deployment}, lambda_context())
    return deployment


def stage_v2(platform: Platform, config: str) -> dict[str, str]:
    aws.table(platform.model_versions_table).put_item(
        Item={"model_version": "v0002", "status": "deploying", "model_data_url": V2_DATA}
    )
    return {
        "endpoint_name": platform.endpoint_name,
        "endpoint_config_name": config,
        "previous_endpoint_config_name": control(platform)["endpoint_config_name"],
    }


def test_the_first_deployment_becomes_production_without_last_known_good(env: Platform) -> None:
    deployment = deploy_v1()

    result = handler({"model_version": "v0001", "deployment": deployment}, lambda_context())

    assert result == {"production_version": "v0001", "last_known_good_version": ""}
    item = control(env)
    assert (item["model_version"], item["model_data_url"]) == ("v0001", V1_DATA)
    assert item["endpoint_config_name"] == deployment["endpoint_config_name"]
    assert "last_known_good" not in item
    assert status(env, "v0001") == "production"
    # The pipeline's own deployment is audited as auto_deploy by the function's principal
    (record,) = audit.list_records(env.audit_table)
    assert (record.action, record.actor_kind, record.target) == ("auto_deploy", "iam", "v0001")
    assert (record.before["model_version"], record.after["model_version"]) == ("", "v0001")


def test_a_new_version_keeps_the_previous_one_as_last_known_good(env: Platform) -> None:
    v1 = promote_v1(env)
    deployment = stage_v2(env, "v0002-config-bbbb")

    with Stubber(aws.sagemaker()) as stub:
        stub.add_response(
            "describe_endpoint", endpoint_description(env.endpoint_name, "v0002-config-bbbb")
        )
        result = handler({"model_version": "v0002", "deployment": deployment}, lambda_context())
        # A retried invocation changes nothing (and does not shift last-known-good).
        stub.add_response(
            "describe_endpoint", endpoint_description(env.endpoint_name, "v0002-config-bbbb")
        )
        again = handler({"model_version": "v0002", "deployment": deployment}, lambda_context())

    assert result == again == {"production_version": "v0002", "last_known_good_version": "v0001"}
    item = control(env)
    assert (item["model_version"], item["endpoint_config_name"]) == ("v0002", "v0002-config-bbbb")
    assert item["last_known_good"] == {
        "model_version": "v0001",
        "endpoint_config_name": v1["endpoint_config_name"],
        "model_data_url": V1_DATA,
    }
    assert (status(env, "v0002"), status(env, "v0001")) == ("production", "deployed")


def test_an_endpoint_serving_another_config_means_the_deployment_rolled_back(
    env: Platform,
) -> None:
    v1 = promote_v1(env)
    deployment = stage_v2(env, "v0002-config-bbbb")

    with Stubber(aws.sagemaker()) as stub:
        stub.add_response(
            "describe_endpoint", endpoint_description(env.endpoint_name, v1["endpoint_config_name"])
        )
        with pytest.raises(DeploymentRolledBack, match="was rolled back"):
            handler({"model_version": "v0002", "deployment": deployment}, lambda_context())

    assert control(env)["model_version"] == "v0001"
    assert status(env, "v0001") == "production"


def test_production_is_only_replaced_if_it_still_holds_what_was_read(env: Platform) -> None:
    promote_v1(env)
    stale = Release("v0000", "v0000-config", "s3://old")
    with pytest.raises(ProductionChangedError, match="no longer holds v0000"):
        replace_production(
            env.control_table,
            Release("v0002", "v0002-config-bbbb", V2_DATA),
            last_known_good=stale,
            expected=stale,
        )
    assert control(env)["model_version"] == "v0001"
