"""Register against moto: the approved model package and the lineage item."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.register.handler import handler
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    start_training,
    use_handler_env,
)
from tuneloop import aws

__all__ = ["aws_credentials", "platform"]

MODEL_DATA = "s3://tuneloop-artifacts/jobs/v0002-train/output/model.tar.gz"
EVENT: dict[str, Any] = {
    "model_version": "v0002",
    "model_data": MODEL_DATA,
    "dataset": {
        "model_version": "v0002",
        "dataset_s3_uri": "s3://tuneloop-curated/datasets/v0002/",
        "dataset_sha256": "abc123",
        "record_count": 42,
        "champion_version": "v0001",
    },
    "train_job": "v0002-train",
    "eval_job": {"job_name": "v0002-eval", "output_path": "s3://tuneloop-artifacts/jobs/"},
    "decision_s3_uri": "s3://tuneloop-artifacts/gate/v0002/decision.json",
    "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:retrain:v0002",
}


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "register")
    start_training(platform, "v0002")
    return platform


def packages(platform: Platform) -> list[Any]:
    return aws.sagemaker().list_model_packages(ModelPackageGroupName=platform.model_package_group)[
        "ModelPackageSummaryList"
    ]


def test_an_approved_model_is_registered_with_its_lineage(env: Platform) -> None:
    aws.table(env.model_versions_table).put_item(
        Item={"model_version": "v0002", "status": "training"}
    )

    result = handler(EVENT, lambda_context())

    (summary,) = packages(env)
    assert result == {"model_package_arn": summary["ModelPackageArn"]}
    package = aws.sagemaker().describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    assert package["ModelApprovalStatus"] == "Approved"
    (container,) = package["InferenceSpecification"]["Containers"]
    assert (container["Image"], container["ModelDataUrl"]) == (env.serving_image_uri, MODEL_DATA)
    metadata = package["CustomerMetadataProperties"]
    assert metadata["dataset_sha256"] == "abc123"
    assert (metadata["train_job"], metadata["eval_job"]) == ("v0002-train", "v0002-eval")

    item = aws.table(env.model_versions_table).get_item(Key={"model_version": "v0002"})["Item"]
    assert item["status"] == "registered"
    assert item["model_package_arn"] == summary["ModelPackageArn"]
    assert (item["train_job"], item["eval_job"]) == ("v0002-train", "v0002-eval")
    assert item["decision_s3_uri"] == EVENT["decision_s3_uri"]
    assert (item["record_count"], item["parent_version"]) == (42, "v0001")
    assert item["model_data_url"] == MODEL_DATA


def test_a_retried_registration_does_not_create_a_second_package(env: Platform) -> None:
    first = handler(EVENT, lambda_context())
    again = handler(EVENT, lambda_context())
    assert again == first
    assert len(packages(env)) == 1


def test_missing_inputs_are_named(env: Platform) -> None:
    with pytest.raises(ValueError, match="lacks model_data"):
        handler({"model_version": "v0002"}, lambda_context())
