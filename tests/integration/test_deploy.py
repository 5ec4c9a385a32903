"""Deploy: the create path against moto, the blue/green update path with a Stubber.

Deploy serves the model package Register created: the endpoint's model names the package
(``ModelPackageName``), never an image or artifact of its own.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from lambdas.deploy.handler import handler
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tests.integration.sagemaker_stubs import ENDPOINT_ARN, CapturedCalls, endpoint_description
from tuneloop import aws
from tuneloop.release.deployment import EndpointBusyError, PackageNotApprovedError

__all__ = ["aws_credentials", "platform"]

MODEL_DATA = "s3://tuneloop-artifacts/jobs/v0002-train/output/model.tar.gz"
ARN_PREFIX = "arn:aws:sagemaker:us-east-1:123456789012:"
VERSION = "v0002-20260101-000000"
PACKAGE_ARN = f"{ARN_PREFIX}model-package/tuneloop-models/1"


def register_package(platform: Platform, status: str = "Approved") -> str:
    """A package as Register creates it (its container is what the endpoint runs), and the
    version item Register leaves ``registered``."""
    aws.table(platform.model_versions_table).put_item(
        Item={"model_version": VERSION, "status": "registered"}
    )
    response = aws.sagemaker().create_model_package(
        ModelPackageGroupName=platform.model_package_group,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": platform.serving_image_uri,
                    "ModelDataUrl": MODEL_DATA,
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                }
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus=status,  # type: ignore[arg-type]
    )
    return str(response["ModelPackageArn"])


def event(package_arn: str) -> dict[str, str]:
    return {"model_version": VERSION, "model_package_arn": package_arn}


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "deploy")
    return platform


def version_item(platform: Platform) -> dict[str, Any]:
    return aws.table(platform.model_versions_table).get_item(Key={"model_version": VERSION})["Item"]


def test_the_first_deployment_creates_model_config_and_endpoint(env: Platform) -> None:
    # Given the package Register created for the version
    package_arn = register_package(env)

    result = handler(event(package_arn), lambda_context())

    sagemaker = aws.sagemaker()
    endpoint = sagemaker.describe_endpoint(EndpointName=env.endpoint_name)
    assert result == {
        "endpoint_name": env.endpoint_name,
        "endpoint_config_name": endpoint["EndpointConfigName"],
        "previous_endpoint_config_name": "",
    }
    assert result["endpoint_config_name"].startswith("v0002-20260101-000000-config-")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=result["endpoint_config_name"])
    (variant,) = config["ProductionVariants"]
    assert (variant["VariantName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        "AllTraffic",
        env.serving_instance_type,
        1,
    )
    # Then the endpoint's model is the registered package itself
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["ExecutionRoleArn"] == env.sagemaker_role_arn
    assert model["PrimaryContainer"] == {"ModelPackageName": package_arn}

    item = version_item(env)
    assert item["status"] == "deploying"
    assert item["endpoint_config_name"] == result["endpoint_config_name"]


def test_an_existing_endpoint_is_updated_blue_green_with_auto_rollback(env: Platform) -> None:
    aws.table(env.model_versions_table).put_item(
        Item={"model_version": VERSION, "status": "registered"}
    )
    sagemaker = aws.sagemaker()
    captured = CapturedCalls(sagemaker)
    with Stubber(sagemaker) as stub:
        stub.add_response(
            "describe_endpoint",
            endpoint_description(env.endpoint_name, "v0001-config-aaaa"),
            {"EndpointName": env.endpoint_name},
        )
        stub.add_response(
            "describe_model_package",
            {
                "ModelPackageName": "tuneloop-models",
                "ModelPackageArn": PACKAGE_ARN,
                "CreationTime": endpoint_description("x", "y")["CreationTime"],
                "ModelPackageStatus": "Completed",
                "ModelPackageStatusDetails": {"ValidationStatuses": []},
                "ModelApprovalStatus": "Approved",
            },
            {"ModelPackageName": PACKAGE_ARN},
        )
        stub.add_response(
            "create_model",
            {"ModelArn": f"{ARN_PREFIX}model/v0002"},
            {
                "ModelName": ANY,
                "ExecutionRoleArn": env.sagemaker_role_arn,
                "PrimaryContainer": {"ModelPackageName": PACKAGE_ARN},
            },
        )
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{ARN_PREFIX}endpoint-config/v0002"},
            {"EndpointConfigName": ANY, "ProductionVariants": ANY},
        )
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": ENDPOINT_ARN},
            {
                "EndpointName": env.endpoint_name,
                "EndpointConfigName": ANY,
                "DeploymentConfig": {
                    "BlueGreenUpdatePolicy": {
                        "TrafficRoutingConfiguration": {
                            "Type": "ALL_AT_ONCE",
                            "WaitIntervalInSeconds": 0,
                        },
                        "TerminationWaitInSeconds": 600,
                        "MaximumExecutionTimeoutInSeconds": 3600,
                    },
                    "AutoRollbackConfiguration": {
                        "Alarms": [{"AlarmName": "tuneloop-5xx"}, {"AlarmName": "tuneloop-latency"}]
                    },
                },
            },
        )

        result = handler(event(PACKAGE_ARN), lambda_context())

        stub.assert_no_pending_responses()
    new_config = captured.params("CreateEndpointConfig")["EndpointConfigName"]
    assert captured.params("UpdateEndpoint")["EndpointConfigName"] == new_config
    assert result == {
        "endpoint_name": env.endpoint_name,
        "endpoint_config_name": new_config,
        "previous_endpoint_config_name": "v0001-config-aaaa",
    }
    assert version_item(env)["status"] == "deploying"


def test_an_endpoint_that_is_still_updating_is_not_touched(env: Platform) -> None:
    sagemaker = aws.sagemaker()
    with Stubber(sagemaker) as stub:
        stub.add_response(
            "describe_endpoint",
            endpoint_description(env.endpoint_name, "v0001-config-aaaa", status="Updating"),
        )
        with pytest.raises(EndpointBusyError, match="is Updating"):
            handler(event(PACKAGE_ARN), lambda_context())
        stub.assert_no_pending_responses()


def test_a_package_the_registry_does_not_approve_is_not_deployed(env: Platform) -> None:
    # Given a package whose approval was revoked (or never given) in the registry
    package_arn = register_package(env, status="Rejected")
    # When Deploy is asked to serve it, then it refuses before creating anything
    with pytest.raises(PackageNotApprovedError, match="is Rejected, not Approved"):
        handler(event(package_arn), lambda_context())
    assert aws.sagemaker().list_models()["Models"] == []
