"""Deploy: the create path against moto, the blue/green update path with a Stubber.

Deploy serves the model package Register created: the endpoint's model names the package
(``ModelPackageName``), never an image or artifact of its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from lambdas.deploy.handler import handler
from tests.integration.aws_fixtures import (
    DATA_LAKE_KEY_ARN,
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tests.integration.sagemaker_stubs import ENDPOINT_ARN, CapturedCalls, endpoint_description
from tuneloop import aws
from tuneloop.release.deployment import EndpointBusyError, PackageNotApprovedError
from tuneloop.release.rollout import RolloutSettings, RolloutSettingsError
from tuneloop.watch.quality import DEFAULT_REFUSAL_PATTERNS, QualitySettings
from tuneloop.watch.quality_thresholds import set_quality_thresholds

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
    # with the endpoint and version its quality metrics are published under
    assert model["PrimaryContainer"]["ModelPackageName"] == package_arn
    environment = model["PrimaryContainer"]["Environment"]
    assert environment["TUNELOOP_ENDPOINT_NAME"] == env.endpoint_name
    assert environment["TUNELOOP_MODEL_VERSION"] == VERSION
    assert json.loads(environment["TUNELOOP_REFUSAL_PATTERNS"]) == list(DEFAULT_REFUSAL_PATTERNS)
    # And a sample of its traffic is captured, encrypted with the data lake key
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == QualitySettings().capture_sampling_percentage
    assert capture["DestinationS3Uri"] == f"s3://{env.curated_bucket}/capture/"
    assert capture["KmsKeyId"] == DATA_LAKE_KEY_ARN
    assert capture["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert capture["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}

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
                "PrimaryContainer": {"ModelPackageName": PACKAGE_ARN, "Environment": ANY},
            },
        )
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{ARN_PREFIX}endpoint-config/v0002"},
            {"EndpointConfigName": ANY, "ProductionVariants": ANY, "DataCaptureConfig": ANY},
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


def _quality_alarm(name: str, metric: str, threshold: float) -> None:
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName=name,
        AlarmDescription="Too many answers: roll back.",
        Namespace="TuneLoop/Endpoint",
        MetricName=metric,
        Dimensions=[{"Name": "EndpointName", "Value": "ep"}],
        Statistic="Average",
        Period=300,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=["arn:aws:sns:us-east-1:123456789012:alarms"],
        TreatMissingData="notBreaching",
    )


def _answers(version: str, metric: str, values: list[float], at: datetime) -> None:
    aws.client("cloudwatch").put_metric_data(
        Namespace="TuneLoop/Endpoint",
        MetricData=[
            {
                "MetricName": metric,
                "Value": value,
                "Dimensions": [
                    {"Name": "EndpointName", "Value": "ep"},
                    {"Name": "ModelVersion", "Value": version},
                ],
                "Timestamp": at,
            }
            for value in values
        ],
    )


def test_deploy_raises_a_quality_bound_to_the_previous_versions_rate(platform: Platform) -> None:
    # Given quality alarms at their absolute bounds, and an outgoing version that refused
    # 30% of its answers (empty: none) within the baseline window
    _quality_alarm("empty", "EmptyAnswer", 0.2)
    _quality_alarm("refusal", "Refusal", 0.2)
    now = datetime.now(UTC)
    _answers("v1", "Refusal", [1, 1, 1, 0, 0, 0, 0, 0, 0, 0], now - timedelta(hours=1))
    _answers("v1", "EmptyAnswer", [0, 0, 0, 0], now - timedelta(hours=1))
    _answers("v0", "Refusal", [1, 1, 1, 1], now - timedelta(hours=1))  # another version
    # When Deploy sets the bounds for the version going live (factor 2)
    bounds = set_quality_thresholds(
        endpoint_name="ep",
        outgoing_version="v1",
        alarm_names={"empty": "empty", "refusal": "refusal"},
        settings=QualitySettings(baseline_factor=2.0),
        now=now,
    )
    # Then the refusal bound is the baseline x factor, the empty bound stays absolute
    assert bounds == {"empty": 0.2, "refusal": pytest.approx(0.6)}
    alarms = {
        a["AlarmName"]: a
        for a in aws.client("cloudwatch").describe_alarms(AlarmNames=["empty", "refusal"])[
            "MetricAlarms"
        ]
    }
    assert alarms["refusal"]["Threshold"] == pytest.approx(0.6)
    assert alarms["empty"]["Threshold"] == 0.2
    # And the rewritten alarm keeps everything else (actions, statistic, dimensions)
    refusal = alarms["refusal"]
    assert refusal["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:alarms"]
    assert (refusal["Statistic"], refusal["Period"], refusal["MetricName"]) == (
        "Average",
        300,
        "Refusal",
    )
    assert refusal["Dimensions"] == [{"Name": "EndpointName", "Value": "ep"}]
    assert refusal["AlarmDescription"] == "Too many answers: roll back."


def test_a_first_deployment_keeps_the_absolute_bounds(platform: Platform) -> None:
    _quality_alarm("refusal", "Refusal", 0.6)  # raised for an earlier version
    bounds = set_quality_thresholds(
        endpoint_name="ep",
        outgoing_version="",
        alarm_names={"refusal": "refusal"},
        settings=QualitySettings(),
    )
    assert bounds == {"refusal": 0.2}
    (alarm,) = aws.client("cloudwatch").describe_alarms(AlarmNames=["refusal"])["MetricAlarms"]
    assert alarm["Threshold"] == 0.2


def test_a_canary_rollout_sizes_the_variant_and_shifts_a_canary_first(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the stage's rollout: a 50% canary of a two-instance variant
    rollout = RolloutSettings(
        mode="canary", instance_count=2, canary_size_percent=50, wait_interval_seconds=240
    )
    monkeypatch.setenv("ROLLOUT_SETTINGS", rollout.to_json())
    aws.table(env.model_versions_table).put_item(
        Item={"model_version": VERSION, "status": "registered"}
    )
    sagemaker = aws.sagemaker()
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
        stub.add_response("create_model", {"ModelArn": f"{ARN_PREFIX}model/v0002"}, None)
        variant = {
            "VariantName": "AllTraffic",
            "ModelName": ANY,
            "InstanceType": env.serving_instance_type,
            "InitialInstanceCount": 2,
            "InitialVariantWeight": 1.0,
        }
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"{ARN_PREFIX}endpoint-config/v0002"},
            {"EndpointConfigName": ANY, "ProductionVariants": [variant], "DataCaptureConfig": ANY},
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
                            "Type": "CANARY",
                            "WaitIntervalInSeconds": 240,
                            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
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

        handler(event(PACKAGE_ARN), lambda_context())

        stub.assert_no_pending_responses()


def test_rollout_settings_outside_the_limits_fail_before_any_call(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLOUT_SETTINGS", '{"mode": "canary"}')  # 10% of one instance
    with Stubber(aws.sagemaker()) as stub, pytest.raises(RolloutSettingsError, match="canary"):
        handler(event(PACKAGE_ARN), lambda_context())
    stub.assert_no_pending_responses()
