"""Resources of the contract (docs/contracts.md) created in moto, for integration tests.

Use the ``platform`` fixture (import it into the test module) or call ``create_platform()``
inside your own ``mock_aws()``. ``handler_env(platform, "deploy")`` gives the environment
variables the CDK app sets on that function.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from moto import mock_aws

from tuneloop import aws
from tuneloop.planning.run_check import TrainingCapacitySettings
from tuneloop.release.autoscaling import AutoscalingSettings
from tuneloop.release.rollout import RolloutSettings
from tuneloop.watch.quality import QualitySettings

REGION = "us-east-1"
ACCOUNT = "123456789012"
DATA_LAKE_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-00000000da7a"


@dataclass(frozen=True)
class Platform:
    raw_bucket: str = "tuneloop-raw"
    curated_bucket: str = "tuneloop-curated"
    artifacts_bucket: str = "tuneloop-artifacts"
    records_table: str = "Records"
    drops_table: str = "Drops"
    model_versions_table: str = "ModelVersions"
    control_table: str = "Control"
    benchmarks_table: str = "Benchmarks"
    audit_table: str = "Audit"
    incidents_table: str = "Incidents"
    model_package_group: str = "tuneloop-models"
    endpoint_name: str = "tuneloop-endpoint"
    serving_image_uri: str = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/serving:latest"
    # moto validates instance types against an older list than SageMaker's.
    serving_instance_type: str = "ml.g4dn.xlarge"
    sagemaker_role_arn: str = f"arn:aws:iam::{ACCOUNT}:role/tuneloop-sagemaker"
    rollback_alarm_names: str = "tuneloop-5xx,tuneloop-latency"
    topic_arn: str = ""
    state_machine_arn: str = ""
    retrain_threshold: int = 3
    gate_policy: str = (
        '{"suites": {"mmlu": {"role": "general", "delta": 0.05},'
        ' "company_faq": {"role": "must_pass", "floor": 0.5}}}'
    )


def _table(name: str, key: str, **extra: Any) -> dict[str, Any]:
    definitions = [{"AttributeName": key, "AttributeType": "S"}]
    definitions += extra.pop("extra_attributes", [])
    return {
        "TableName": name,
        "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
        "AttributeDefinitions": definitions,
        "BillingMode": "PAY_PER_REQUEST",
        **extra,
    }


def month_indexed_table(name: str, key: str, month: str, at: str) -> dict[str, Any]:
    """CreateTable arguments for a table with a ``by_month`` index (``month`` + ``at``), as
    stacks/constructs/state_tables.py defines Drops and ModelVersions."""
    return _table(
        name,
        key,
        extra_attributes=[
            {"AttributeName": month, "AttributeType": "S"},
            {"AttributeName": at, "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_month",
                "KeySchema": [
                    {"AttributeName": month, "KeyType": "HASH"},
                    {"AttributeName": at, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


def incidents_table(name: str) -> dict[str, Any]:
    return month_indexed_table(name, "incident_id", "opened_month", "opened_at")


def drops_table(name: str) -> dict[str, Any]:
    return month_indexed_table(name, "drop_id", "started_month", "started_at")


def model_versions_table(name: str) -> dict[str, Any]:
    return month_indexed_table(name, "model_version", "created_month", "created_at")


def put_version(table_name: str, model_version: str, *, days_ago: float = 0, **fields: Any) -> None:
    """A version item as ``start_training`` creates it (``created_at``, ``created_month``:
    on the ``by_month`` index), ``days_ago`` days old, with ``fields``."""
    created = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    aws.table(table_name).put_item(
        Item={
            "model_version": model_version,
            "created_at": created,
            "created_month": created[:7],
            **fields,
        }
    )


def create_platform(base: Platform | None = None) -> Platform:
    """Create the buckets, tables, topic, model package group and a trivial state machine."""
    names = base or Platform()
    s3 = aws.client("s3")
    for bucket in (names.raw_bucket, names.curated_bucket, names.artifacts_bucket):
        s3.create_bucket(Bucket=bucket)
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        **_table(
            names.records_table,
            "record_id",
            extra_attributes=[
                {"AttributeName": "dataset", "AttributeType": "S"},
                {"AttributeName": "ingested_at", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_dataset",
                    "KeySchema": [
                        {"AttributeName": "dataset", "KeyType": "HASH"},
                        {"AttributeName": "ingested_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
    )
    dynamodb.create_table(**drops_table(names.drops_table))
    dynamodb.create_table(**model_versions_table(names.model_versions_table))
    dynamodb.create_table(**incidents_table(names.incidents_table))
    dynamodb.create_table(**_table(names.control_table, "key"))
    dynamodb.create_table(
        **_table(
            names.benchmarks_table,
            "name",
            extra_attributes=[{"AttributeName": "version", "AttributeType": "S"}],
            KeySchema=[
                {"AttributeName": "name", "KeyType": "HASH"},
                {"AttributeName": "version", "KeyType": "RANGE"},
            ],
        )
    )
    dynamodb.create_table(
        **_table(
            names.audit_table,
            "month",
            extra_attributes=[{"AttributeName": "event_id", "AttributeType": "S"}],
            KeySchema=[
                {"AttributeName": "month", "KeyType": "HASH"},
                {"AttributeName": "event_id", "KeyType": "RANGE"},
            ],
        )
    )
    topic_arn = aws.client("sns").create_topic(Name="tuneloop-notify")["TopicArn"]
    aws.client("sagemaker").create_model_package_group(
        ModelPackageGroupName=names.model_package_group
    )
    state_machine_arn = aws.client("stepfunctions").create_state_machine(
        name="retrain",
        # Waits, so that a started execution stays RUNNING for the duration of a test.
        definition=json.dumps(
            {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}}}
        ),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/tuneloop-states",
    )["stateMachineArn"]
    return Platform(
        **{**names.__dict__, "topic_arn": topic_arn, "state_machine_arn": state_machine_arn}
    )


HANDLER_ENV: dict[str, tuple[str, ...]] = {
    "ingest": (
        "RECORDS_TABLE",
        "DROPS_TABLE",
        "CONTROL_TABLE",
        "STATE_MACHINE_ARN",
        "RETRAIN_THRESHOLD",
    ),
    "retrain_trigger": ("CONTROL_TABLE", "STATE_MACHINE_ARN", "RETRAIN_THRESHOLD"),
    "prepare_dataset": (
        "RECORDS_TABLE",
        "DROPS_TABLE",
        "CONTROL_TABLE",
        "CURATED_BUCKET",
        "ARTIFACTS_BUCKET",
        "MODEL_VERSIONS_TABLE",
        "BENCHMARKS_TABLE",
        "GATE_POLICY",
        "TRAINING_CAPACITY",
    ),
    "register": ("MODEL_VERSIONS_TABLE", "MODEL_PACKAGE_GROUP", "SERVING_IMAGE_URI"),
    "deploy": (
        "CONTROL_TABLE",
        "MODEL_VERSIONS_TABLE",
        "ENDPOINT_NAME",
        "SERVING_INSTANCE_TYPE",
        "SAGEMAKER_ROLE_ARN",
        "ROLLBACK_ALARM_NAMES",
        "QUALITY_SETTINGS",
        "QUALITY_ALARMS",
        "CAPTURE_DESTINATION",
        "DATA_LAKE_KEY_ARN",
        "ROLLOUT_SETTINGS",
        "AUTOSCALING_SETTINGS",
    ),
    "confirm_deployment": (
        "CONTROL_TABLE",
        "MODEL_VERSIONS_TABLE",
        "ENDPOINT_NAME",
        "AUDIT_TABLE",
        "AUTOSCALING_SETTINGS",
    ),
    "record_failure": ("MODEL_VERSIONS_TABLE",),
    "rollback": (
        "CONTROL_TABLE",
        "MODEL_VERSIONS_TABLE",
        "ENDPOINT_NAME",
        "NOTIFY_TOPIC_ARN",
        "AUDIT_TABLE",
        "INCIDENTS_TABLE",
        "MAX_AUTOMATIC_ROLLBACKS",
        "ROLLBACK_WINDOW_HOURS",
        "AUTOSCALING_SETTINGS",
    ),
}


def handler_env(platform: Platform, function: str) -> dict[str, str]:
    """The environment variables of ``function`` pointing at ``platform``'s resources."""
    values = {
        "RECORDS_TABLE": platform.records_table,
        "DROPS_TABLE": platform.drops_table,
        "CONTROL_TABLE": platform.control_table,
        "MODEL_VERSIONS_TABLE": platform.model_versions_table,
        "STATE_MACHINE_ARN": platform.state_machine_arn,
        "RETRAIN_THRESHOLD": str(platform.retrain_threshold),
        "CURATED_BUCKET": platform.curated_bucket,
        "ARTIFACTS_BUCKET": platform.artifacts_bucket,
        "MODEL_PACKAGE_GROUP": platform.model_package_group,
        "SERVING_IMAGE_URI": platform.serving_image_uri,
        "SERVING_INSTANCE_TYPE": platform.serving_instance_type,
        "SAGEMAKER_ROLE_ARN": platform.sagemaker_role_arn,
        "ROLLBACK_ALARM_NAMES": platform.rollback_alarm_names,
        "QUALITY_SETTINGS": QualitySettings().to_json(),
        "QUALITY_ALARMS": "{}",  # no quality alarms: Deploy leaves bounds alone
        "CAPTURE_DESTINATION": f"s3://{platform.curated_bucket}/capture/",
        "DATA_LAKE_KEY_ARN": DATA_LAKE_KEY_ARN,
        "ROLLOUT_SETTINGS": RolloutSettings().to_json(),
        "AUTOSCALING_SETTINGS": AutoscalingSettings().to_json(),  # off unless a test turns it on
        "ENDPOINT_NAME": platform.endpoint_name,
        "NOTIFY_TOPIC_ARN": platform.topic_arn,
        "BENCHMARKS_TABLE": platform.benchmarks_table,
        "AUDIT_TABLE": platform.audit_table,
        "INCIDENTS_TABLE": platform.incidents_table,
        "MAX_AUTOMATIC_ROLLBACKS": "3",
        "ROLLBACK_WINDOW_HOURS": "24",
        "GATE_POLICY": platform.gate_policy,
        # The local stage's: a CPU instance type and the packaged model, so nothing to check.
        "TRAINING_CAPACITY": TrainingCapacitySettings(
            training_instance_type="ml.m5.xlarge",
            hyperparameters={"base_model": "smollm2-135m-instruct"},
        ).to_json(),
    }
    return {name: values[name] for name in HANDLER_ENV[function]}


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "tuneloop-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:tuneloop-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_millis: int = 900_000  # a fresh invocation of a 15-minute function

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


def lambda_context() -> LambdaContext:
    """The attributes Powertools' ``inject_lambda_context`` reads."""
    return cast(LambdaContext, FakeLambdaContext())


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and region; no endpoint override, so moto intercepts every call."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "tuneloop-test",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws.reset()
    yield
    aws.reset()


@pytest.fixture
def platform(aws_credentials: None) -> Iterator[Platform]:
    with mock_aws():
        yield create_platform()


def use_handler_env(monkeypatch: pytest.MonkeyPatch, platform: Platform, function: str) -> None:
    for name, value in handler_env(platform, function).items():
        monkeypatch.setenv(name, value)


def start_training(platform: Platform, *model_versions: str) -> None:
    """Version items as PrepareDataset leaves them (``training``), for steps that follow it."""
    from tuneloop.release import model_versions as versions

    for model_version in model_versions:
        versions.start_training(platform.model_versions_table, model_version, {})


def register_approved_package(platform: Platform, version: str, artifact: bytes, key: str) -> str:
    """Upload ``artifact`` to ``key`` of the artifacts bucket, mark ``version`` registered and
    create its approved package on the serving image: what Register leaves for Deploy."""
    aws.client("s3").put_object(Bucket=platform.artifacts_bucket, Key=key, Body=artifact)
    put_version(platform.model_versions_table, version, status="registered")
    response = aws.sagemaker().create_model_package(
        ModelPackageGroupName=platform.model_package_group,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": platform.serving_image_uri,
                    "ModelDataUrl": f"s3://{platform.artifacts_bucket}/{key}",
                }
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus="Approved",
    )
    return str(response["ModelPackageArn"])
