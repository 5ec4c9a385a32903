"""A local endpoint's quality metrics and data capture: the serving process's EMF lines land
in the emulator's CloudWatch (as CloudWatch Logs would extract them), sampled invocations
are captured to S3 in SageMaker's layout, and a quality alarm on them fires."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.integration.archives import archive_folder
from tests.integration.emulator_fixtures import unenforced_emulator
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.emulator import Emulator
from tuneloop.release.deployment import DataCapture

ENDPOINT = "quality-ep"
SECRET = "call me at 555-0100"
CAPTURE_KEY = re.compile(
    rf"^capture/{ENDPOINT}/AllTraffic/\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}}/\d{{2}}-\d{{2}}-\d{{3}}-"
    r"[0-9a-f-]{36}\.jsonl$"
)


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from unenforced_emulator(tmp_path_factory)


@pytest.fixture(scope="module")
def endpoint(aws: Emulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="models")
    s3.create_bucket(Bucket="curated")
    model = make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "m")
    s3.put_object(Bucket="models", Key="v1/model.tar.gz", Body=archive_folder(model))
    sagemaker: Any = boto3.client("sagemaker")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    role = boto3.client("iam").create_role(RoleName="model", AssumeRolePolicyDocument=trust)
    sagemaker.create_model(
        ModelName="v1-model",
        ExecutionRoleArn=role["Role"]["Arn"],
        PrimaryContainer={
            "Image": "serving",
            "ModelDataUrl": "s3://models/v1/model.tar.gz",
            # What Deploy sets, plus the test switch: every answer is empty.
            "Environment": {
                "TUNELOOP_ENDPOINT_NAME": ENDPOINT,
                "TUNELOOP_MODEL_VERSION": "v1",
                "TUNELOOP_QUIET_FAILURE": "empty",
            },
        },
    )
    capture = DataCapture(
        destination="s3://curated/capture/", kms_key_id="", sampling_percentage=100
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="v1-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "v1-model",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        DataCaptureConfig=capture.config(),
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="v1-config")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"]
        if status != "Creating":
            break
        time.sleep(0.5)
    assert status == "InService", sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    return ENDPOINT


def _invoke(endpoint: str) -> dict[str, Any]:
    runtime = boto3.client("sagemaker-runtime")
    body = json.dumps({"prompt": SECRET, "parameters": {"max_new_tokens": 3}})
    response = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=body, ContentType="application/json"
    )
    return dict(json.loads(response["Body"].read()))


def _statistics(metric: str, dimensions: dict[str, str]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    cloudwatch: Any = boto3.client("cloudwatch")
    return list(
        cloudwatch.get_metric_statistics(
            Namespace="TuneLoop/Endpoint",
            MetricName=metric,
            Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
            StartTime=now - timedelta(seconds=600),
            EndTime=now + timedelta(seconds=60),
            Period=600,
            Statistics=["Average", "SampleCount"],
        )["Datapoints"]
    )


def test_invocations_publish_quality_metrics_and_capture_objects(
    aws: Emulator, endpoint: str
) -> None:
    # When three requests reach an endpoint whose model answers empty
    answers = [_invoke(endpoint) for _ in range(3)]
    # Then each answer is empty, the model's version answers, and per-version metrics exist
    assert [a["generated_text"] for a in answers] == ["", "", ""]
    assert {a["model_version"] for a in answers} == {"v1"}
    (empty,) = _statistics("EmptyAnswer", {"EndpointName": endpoint, "ModelVersion": "v1"})
    assert (empty["Average"], empty["SampleCount"]) == (1.0, 3.0)
    (tokens,) = _statistics("OutputTokens", {"EndpointName": endpoint})
    assert tokens["SampleCount"] >= 3.0
    # And every invocation is captured (sampling 100%) in SageMaker's layout and record shape
    s3 = boto3.client("s3")
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket="curated", Prefix="capture/").get("Contents", [])
    ]
    assert len(keys) == 3 and all(CAPTURE_KEY.match(k) for k in keys), keys
    line = s3.get_object(Bucket="curated", Key=keys[0])["Body"].read().decode()
    record = json.loads(line)
    data = record["captureData"]
    assert data["endpointInput"]["encoding"] == "JSON"
    assert data["endpointInput"]["mode"] == "INPUT"
    assert json.loads(data["endpointInput"]["data"])["prompt"] == SECRET
    assert json.loads(data["endpointOutput"]["data"])["model_version"] == "v1"
    assert record["eventVersion"] == "0" and record["eventMetadata"]["eventId"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", record["eventMetadata"]["inferenceTime"])
    # And the serving log holds the metrics but never the prompt
    log = next((aws.work_dir / "endpoints").glob("*/serve.log")).read_text()
    assert '"EmptyAnswer": 1' in log and SECRET not in log


def test_a_quality_alarm_on_the_rate_fires(aws: Emulator, endpoint: str) -> None:
    # Given an empty-answer rate alarm as the serving stack defines it
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="empty-rate",
        Namespace="TuneLoop/Endpoint",
        MetricName="EmptyAnswer",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0.5,
        ComparisonOperator="GreaterThanThreshold",
    )
    # When the endpoint keeps answering empty and the alarms are evaluated
    _invoke(endpoint)
    moved = aws.alarms.evaluate_once()
    # Then the alarm is in ALARM
    assert "empty-rate" in moved
