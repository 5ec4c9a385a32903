"""Blue/green traffic shifting on the emulator: UpdateEndpoint's DeploymentConfig splits
requests between the two serving processes by weight; an auto-rollback alarm during the
canary returns all traffic to the old fleet and keeps the old config; a healthy linear
update reaches all traffic step by step and retires the old fleet."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.integration.archives import archive_folder
from tests.integration.emulator_fixtures import unenforced_emulator
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.emulator import Emulator
from tuneloop.local.traffic_split import NEW, OLD

ENDPOINT = "rollout-ep"
ALARM = "rollout-5xx"


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from unenforced_emulator(tmp_path_factory)


def _config(version: str, role_arn: str) -> str:
    """A model and an endpoint config that answer as ``version`` (the same tiny weights)."""
    sagemaker: Any = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName=f"{version}-model",
        ExecutionRoleArn=role_arn,
        PrimaryContainer={
            "Image": "serving",
            "ModelDataUrl": "s3://models/tiny/model.tar.gz",
            "Environment": {"TUNELOOP_ENDPOINT_NAME": ENDPOINT, "TUNELOOP_MODEL_VERSION": version},
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{version}-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{version}-model",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 4,
            }
        ],
    )
    return f"{version}-config"


@pytest.fixture(scope="module")
def role_arn(aws: Emulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="models")
    model = make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "m")
    s3.put_object(Bucket="models", Key="tiny/model.tar.gz", Body=archive_folder(model))
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    role = boto3.client("iam").create_role(RoleName="model", AssumeRolePolicyDocument=trust)
    arn = str(role["Role"]["Arn"])
    boto3.client("sagemaker").create_endpoint(
        EndpointName=ENDPOINT, EndpointConfigName=_config("v1", arn)
    )
    _wait_for_endpoint(lambda e: e["EndpointStatus"] == "InService")
    boto3.client("cloudwatch").put_metric_alarm(
        AlarmName=ALARM,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[
            {"Name": "EndpointName", "Value": ENDPOINT},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    return arn


def _describe() -> dict[str, Any]:
    return dict(boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT))


def _wait_for_endpoint(predicate: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = _describe()
        if predicate(described):
            return described
        time.sleep(0.2)
    raise AssertionError(f"endpoint never reached the state: {_describe()}")


def _invoke() -> str:
    """The answering version, or ``error`` for a failed request."""
    runtime = boto3.client("sagemaker-runtime")
    body = json.dumps({"prompt": "Hi", "parameters": {"max_new_tokens": 2}})
    try:
        response = runtime.invoke_endpoint(
            EndpointName=ENDPOINT, Body=body, ContentType="application/json"
        )
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ModelError"
        return "error"
    return str(json.loads(response["Body"].read())["model_version"])


def _update(config_name: str, routing: dict[str, Any], baking: int = 0) -> None:
    sagemaker: Any = boto3.client("sagemaker")  # Any: the routing is built per test
    sagemaker.update_endpoint(
        EndpointName=ENDPOINT,
        EndpointConfigName=config_name,
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                "TerminationWaitInSeconds": baking,
                "MaximumExecutionTimeoutInSeconds": 600,
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": ALARM}]},
        },
    )


def _wait_for_share(aws: Emulator, count: int, share: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        rollouts = aws.endpoints.rollouts(ENDPOINT)
        if len(rollouts) == count and rollouts[-1].share == share:
            return
        time.sleep(0.1)
    raise AssertionError(f"no rollout at {share}%: {aws.endpoints.rollouts(ENDPOINT)}")


def test_an_alarm_during_the_canary_rolls_back_to_the_old_fleet(
    aws: Emulator, role_arn: str
) -> None:
    # Given an update whose new fleet dies once healthy, with a 25% canary watched for 60 s
    aws.endpoints.crash_next_fleet = True
    routing = {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 60,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    _update(_config("v2", role_arn), routing, baking=60)
    _wait_for_share(aws, count=1, share=25)
    assert _describe()["EndpointStatus"] == "Updating"
    # When requests arrive during the canary: one in four reaches the new fleet and fails
    answers = [_invoke() for _ in range(8)]
    assert answers.count("error") == 2 and answers.count("v1") == 6
    # ... and the 5XX alarm moves to ALARM
    assert aws.alarms.evaluate_once() == [ALARM]
    # Then the update is rolled back before the new fleet got all traffic
    described = _wait_for_endpoint(lambda e: e["EndpointStatus"] == "InService", timeout=60)
    assert described["EndpointConfigName"] == "v1-config"
    assert described["FailureReason"] == (
        f"Deployment rolled back: alarm(s) {ALARM} in ALARM during the canary step (25% of "
        "traffic on the new fleet); all traffic is back on the previous fleet"
    )
    (rollout,) = aws.endpoints.rollouts(ENDPOINT)
    assert rollout.shares == [0, 25, 0] and rollout.outcome == "rolled_back"
    assert rollout.requests(NEW) == 2 and rollout.requests(OLD) == 6
    assert rollout.new.process.poll() is not None, "the new fleet is torn down"
    # And the old fleet answers everything again
    assert [_invoke() for _ in range(4)] == ["v1"] * 4


def test_a_healthy_linear_update_reaches_all_traffic(aws: Emulator, role_arn: str) -> None:
    # Given a linear update in steps of 50% (the alarm still in ALARM from before does not
    # trip it: only a move to ALARM during the update does)
    routing = {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 1,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
    }
    _update(_config("v3", role_arn), routing, baking=1)
    # When it runs to the end
    described = _wait_for_endpoint(
        lambda e: e["EndpointStatus"] == "InService" and e["EndpointConfigName"] == "v3-config"
    )
    # Then every step was taken, the old fleet is retired and the new version answers
    assert not described.get("FailureReason")
    rollout = aws.endpoints.rollouts(ENDPOINT)[-1]
    assert rollout.shares == [0, 50, 100] and rollout.outcome == "completed"
    assert rollout.old.process.poll() is not None, "the old fleet is retired"
    assert [_invoke() for _ in range(3)] == ["v3"] * 3


def test_a_canary_without_its_size_is_refused(aws: Emulator, role_arn: str) -> None:
    before = _describe()
    with pytest.raises(ClientError, match="Invalid DeploymentConfig"):
        _update(_config("v4", role_arn), {"Type": "CANARY", "WaitIntervalInSeconds": 1})
    after = _describe()
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == (
        "InService",
        before["EndpointConfigName"],
    )
