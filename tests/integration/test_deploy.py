"""Deploy: the create path against moto, the blue/green update path with a Stubber."""

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
from tuneloop.deployment import EndpointBusyError

__all__ = ["aws_credentials", "platform"]

MODEL_DATA = "s3://tuneloop-artifacts/jobs/v0002-train/output/model.tar.gz"
ARN_PREFIX = "arn:aws:sagemaker:us-east-1:123456789012:"
EVENT = {"model_version": "v0002-20260101-000000", "model_data": MODEL_DATA}


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "deploy")
    return platform


def version_item(platform: Platform) -> dict[str, Any]:
    return aws.table(platform.model_versions_table).get_item(
        Key={"model_version": EVENT["model_version"]}
    )["Item"]


def test_the_first_deployment_creates_model_config_and_endpoint(env: Platform) -> None:
    result = handler(EVENT, lambda_context())

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
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["ExecutionRoleArn"] == env.sagemaker_role_arn
    container = model["PrimaryContainer"]
    assert (container["Image"], container["ModelDataUrl"]) == (env.serving_image_uri, MODEL_DATA)
    assert container["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}

    item = version_item(env)
    assert item["status"] == "deploying"
    assert item["endpoint_config_name"] == result["endpoint_config_name"]


def test_an_existing_endpoint_is_updated_blue_green_with_auto_rollback(env: Platform) -> None:
    sagemaker = aws.sagemaker()
    captured = CapturedCalls(sagemaker)
    with Stubber(sagemaker) as stub:
        stub.add_response(
            "describe_endpoint",
            endpoint_description(env.endpoint_name, "v0001-config-aaaa"),
            {"EndpointName": env.endpoint_name},
        )
        stub.add_response(
            "create_model",
            {"ModelArn": f"{ARN_PREFIX}model/v0002"},
            {
                "ModelName": ANY,
                "ExecutionRoleArn": env.sagemaker_role_arn,
                "PrimaryContainer": {
                    "Image": env.serving_image_uri,
                    "ModelDataUrl": MODEL_DATA,
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                },
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

        result = handler(EVENT, lambda_context())

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
            handler(EVENT, lambda_context())
        stub.assert_no_pending_responses()
