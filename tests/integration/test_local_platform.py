"""The local platform's emulator: real Lambda code, SageMaker jobs under the container
contract, Step Functions running both, endpoints and alarms."""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.integration.archives import archive_files
from tests.integration.emulator_fixtures import unenforced_emulator
from tuneloop.local.alarms import breaching_state
from tuneloop.local.emulator import Emulator

HANDLER = """
import os
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"greeting": os.environ["GREETING"], "echo": event, "fn": context.function_name}
"""

TRAIN = """
import argparse, json, os, pathlib, sys
parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint_dir")
parser.add_argument("--fail", default="no")
args = parser.parse_args()
if args.fail == "yes":
    pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("bad data in channel train")
    sys.exit(1)
rows = sorted(pathlib.Path(os.environ["SM_CHANNEL_TRAIN"]).glob("*.jsonl"))
pathlib.Path(os.environ["SM_MODEL_DIR"], "weights.txt").write_text(str(len(rows)))
report = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "report.json")
report.write_text(json.dumps({"files": len(rows)}))
print("train_loss=0.5;")
"""


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from unenforced_emulator(tmp_path_factory)


def _role() -> str:
    iam = boto3.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    name = f"role-{time.monotonic_ns()}"
    return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"])


def _function(name: str) -> str:
    response = boto3.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=_role(),
        Handler="hello.handler",
        Code={"ZipFile": _zip({"hello.py": HANDLER})},
        Environment={"Variables": {"GREETING": "hi"}},
    )
    return str(response["FunctionArn"])


def test_lambda_runs_the_deployed_code_with_its_environment(aws: Emulator) -> None:
    _function("hello-fn")
    response = boto3.client("lambda").invoke(
        FunctionName="hello-fn", Payload=json.dumps({"x": 1}).encode()
    )
    assert "FunctionError" not in response
    payload = json.loads(response["Payload"].read())
    assert payload == {"greeting": "hi", "echo": {"x": 1}, "fn": "hello-fn"}


def test_lambda_exception_becomes_a_function_error(aws: Emulator) -> None:
    _function("failing-fn")
    response = boto3.client("lambda").invoke(
        FunctionName="failing-fn", Payload=json.dumps({"fail": True}).encode()
    )
    assert response.get("FunctionError")
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "asked to fail"


def _state_machine(function_arn: str) -> str:
    definition = {
        "StartAt": "Train",
        "States": {
            "Train": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
                "Parameters": {
                    "TrainingJobName.$": "States.Format('{}-train', $$.Execution.Name)",
                    "AlgorithmSpecification": {
                        "TrainingImage": "local",
                        "TrainingInputMode": "File",
                    },
                    "RoleArn": "arn:aws:iam::123456789012:role/sm",
                    "HyperParameters": {
                        "sagemaker_program": "train.py",
                        "sagemaker_submit_directory": "s3://code/sourcedir.tar.gz",
                        "fail.$": "$.fail",
                    },
                    "InputDataConfig": [
                        {
                            "ChannelName": "train",
                            "DataSource": {
                                "S3DataSource": {
                                    "S3DataType": "S3Prefix",
                                    "S3Uri": "s3://code/data/",
                                }
                            },
                        }
                    ],
                    "OutputDataConfig": {"S3OutputPath": "s3://code/jobs"},
                    "ResourceConfig": {
                        "InstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                        "VolumeSizeInGB": 10,
                    },
                    "StoppingCondition": {"MaxRuntimeInSeconds": 600},
                },
                "ResultSelector": {"model_data.$": "$.ModelArtifacts.S3ModelArtifacts"},
                "ResultPath": "$.train",
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}
                ],
                "Next": "Report",
            },
            "Report": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload.$": "$.train"},
                "ResultSelector": {"result.$": "$.Payload"},
                "End": True,
            },
            "Failed": {"Type": "Fail", "Error": "TrainingFailed"},
        },
    }
    response = boto3.client("stepfunctions").create_state_machine(
        name=f"sm-{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=_role()
    )
    return str(response["stateMachineArn"])


def _run(machine_arn: str, payload: dict[str, Any]) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(payload))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.2)
    raise AssertionError("execution did not finish")


@pytest.fixture(scope="module")
def training_setup(aws: Emulator) -> str:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="code")
    s3.put_object(
        Bucket="code", Key="sourcedir.tar.gz", Body=archive_files({"train.py": TRAIN.encode()})
    )
    s3.put_object(Bucket="code", Key="data/a.jsonl", Body=b'{"text": "a"}\n')
    s3.put_object(Bucket="code", Key="data/b.jsonl", Body=b'{"text": "b"}\n')
    return _state_machine(_function("report-fn"))


def test_sync_training_job_runs_the_entry_point_and_uploads_the_model(
    aws: Emulator, training_setup: str
) -> None:
    execution = _run(training_setup, {"fail": "no"})
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    model_data = output["result"]["echo"]["model_data"]
    assert model_data.endswith("-train/output/model.tar.gz")
    assert "/null-train/" not in model_data, "the execution got a generated name"
    bucket, key = model_data[len("s3://") :].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        weights = archive.extractfile("weights.txt")
        assert weights is not None and weights.read() == b"2"


def test_failing_training_job_fails_the_state_with_its_reason(
    aws: Emulator, training_setup: str
) -> None:
    execution = _run(training_setup, {"fail": "yes"})
    assert execution["status"] == "FAILED"
    job = boto3.client("sagemaker").list_training_jobs(StatusEquals="Failed")
    names = [j["TrainingJobName"] for j in job["TrainingJobSummaries"]]
    assert names, "the failed job is recorded as Failed"
    described = boto3.client("sagemaker").describe_training_job(TrainingJobName=names[0])
    assert "bad data in channel train" in described["FailureReason"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0.0, 0.0], "OK"), ([0.0, 3.0], "ALARM"), ([], "INSUFFICIENT_DATA")],
)
def test_alarm_state_follows_the_datapoints(values: list[float], expected: str | None) -> None:
    alarm = {
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 1.0,
        "EvaluationPeriods": 1,
        "Statistic": "Sum",
    }
    points = [{"Timestamp": i, "Sum": v} for i, v in enumerate(values)]
    assert breaching_state(alarm, points) == expected


@pytest.mark.parametrize(
    ("treat_missing_data", "expected"),
    [
        ("notBreaching", "OK"),
        ("breaching", "ALARM"),
        ("ignore", None),
        ("missing", "INSUFFICIENT_DATA"),
    ],
)
def test_no_data_means_what_the_alarm_says_missing_data_means(
    treat_missing_data: str, expected: str | None
) -> None:
    alarm = {
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 1.0,
        "EvaluationPeriods": 1,
        "Statistic": "Sum",
        "TreatMissingData": treat_missing_data,
    }
    assert breaching_state(alarm, []) == expected


def test_alarm_fires_its_sns_action_into_a_lambda(aws: Emulator) -> None:
    function_arn = _function("alarm-listener")
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="alarms")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=function_arn)
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="errors",
        Namespace="Test",
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=[topic],
    )
    cloudwatch.put_metric_data(
        Namespace="Test", MetricData=[{"MetricName": "Errors", "Value": 5.0}]
    )
    moved = aws.alarms.evaluate_once()
    assert "errors" in moved
    state = cloudwatch.describe_alarms(AlarmNames=["errors"])["MetricAlarms"][0]["StateValue"]
    assert state == "ALARM"
    assert aws.alarms.fired[-1]["AlarmName"] == "errors"
    log = aws.work_dir / "logs" / "lambda-alarm-listener.log"
    assert log.exists(), "the subscribed function ran"
