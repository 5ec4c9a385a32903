"""The local platform's target tracking: the capacity it sets from the endpoint's metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tuneloop.local.autoscaling import ScalingEmulator
from tuneloop.release import autoscaling
from tuneloop.release.autoscaling import AutoscalingSettings

REGION = "us-east-1"
ENDPOINT = "serving"
SETTINGS = AutoscalingSettings(
    enabled=True,
    min_instances=1,
    max_instances=3,
    target_value=10.0,  # invocations per instance per minute
    scale_in_cooldown_seconds=30,
    scale_out_cooldown_seconds=5,
)


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from tuneloop import aws

    aws.reset()
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        sagemaker.create_model(
            ModelName="m",
            ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
            PrimaryContainer={"Image": "i"},
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName="c",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "m",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
        sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="c")
        autoscaling.activate(ENDPOINT, SETTINGS)
        yield
    aws.reset()


def invocations(count: int, at: float) -> None:
    cloudwatch: Any = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "Invocations",
                "Value": 1.0,
                "Unit": "Count",
                "Timestamp": at,
                "Dimensions": [
                    {"Name": "EndpointName", "Value": ENDPOINT},
                    {"Name": "VariantName", "Value": "AllTraffic"},
                ],
            }
            for _ in range(count)
        ],
    )


def instances() -> int:
    described = boto3.client("sagemaker", region_name=REGION).describe_endpoint(
        EndpointName=ENDPOINT
    )
    return int(described["ProductionVariants"][0]["CurrentInstanceCount"])


def test_a_burst_scales_out_and_quiet_scales_in_after_the_cooldown(endpoint: None) -> None:
    emulator = ScalingEmulator(window_seconds=10)
    start = time.time()
    # Given 5 invocations in 10 s on one instance: 30 a minute, three times the target
    invocations(5, start)
    # When evaluated Then target tracking sets ceil(1 * 30 / 10) = 3 instances
    (out,) = emulator.evaluate_once(now=start + 1)
    assert (out.from_instances, out.to_instances, out.direction) == (1, 3, "out")
    assert instances() == 3
    # And with the burst out of the window, scale-in waits for its cooldown
    assert emulator.evaluate_once(now=start + 20) == []
    (in_,) = emulator.evaluate_once(now=start + 32)
    assert (in_.to_instances, in_.direction) == (1, "in")
    assert emulator.instance_counts(ENDPOINT) == [1, 3, 1]


def test_nothing_scales_while_dynamic_scaling_is_suspended(endpoint: None) -> None:
    emulator = ScalingEmulator(window_seconds=10)
    start = time.time()
    invocations(5, start)
    autoscaling.suspend(ENDPOINT, SETTINGS)
    assert emulator.evaluate_once(now=start + 1) == []
    assert instances() == 1
    # Restored: the same load scales out
    autoscaling.activate(ENDPOINT, SETTINGS)
    assert [a.to_instances for a in emulator.evaluate_once(now=start + 2)] == [3]


def test_load_at_the_target_leaves_the_variant_alone(endpoint: None) -> None:
    emulator = ScalingEmulator(window_seconds=6)
    start = time.time()
    invocations(1, start)  # 10 a minute on one instance: the target
    assert emulator.evaluate_once(now=start + 1) == []
