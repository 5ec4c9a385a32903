"""Register for a model line (moto): the line on the version item and in the package."""

from __future__ import annotations

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
from tests.integration.test_register import EVENT, packages
from tuneloop import aws
from tuneloop.model_line_settings import ModelLineError, ModelLines

__all__ = ["aws_credentials", "platform"]

LINES = ModelLines.parse([{"name": "support", "datasets": ["acme_support"]}])


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "register")
    monkeypatch.setenv("MODEL_LINES", LINES.to_json())
    start_training(platform, "v0002")
    return platform


def test_a_lines_version_records_its_line(env: Platform) -> None:
    handler({**EVENT, "model_line": "support"}, lambda_context())

    item = aws.table(env.model_versions_table).get_item(Key={"model_version": "v0002"})["Item"]
    assert (item["status"], item["model_line"]) == ("registered", "support")
    (summary,) = packages(env)
    package = aws.sagemaker().describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    assert package["CustomerMetadataProperties"]["model_line"] == "support"
    assert "model line support" in package["ModelPackageDescription"]


def test_the_line_is_taken_from_the_dataset_when_the_payload_lacks_it(env: Platform) -> None:
    dataset = {**EVENT["dataset"], "model_line": "support"}
    handler({**EVENT, "dataset": dataset}, lambda_context())

    item = aws.table(env.model_versions_table).get_item(Key={"model_version": "v0002"})["Item"]
    assert item["model_line"] == "support"


def test_a_line_the_deployment_lacks_registers_nothing(env: Platform) -> None:
    with pytest.raises(ModelLineError, match=r"no model line 'search' \(lines: support\)"):
        handler({**EVENT, "model_line": "search"}, lambda_context())
    assert packages(env) == []


def test_without_lines_no_line_is_recorded(env: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_LINES", "[]")
    handler({**EVENT, "model_line": ""}, lambda_context())

    item = aws.table(env.model_versions_table).get_item(Key={"model_version": "v0002"})["Item"]
    assert "model_line" not in item
    (summary,) = packages(env)
    package = aws.sagemaker().describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    assert "model_line" not in package["CustomerMetadataProperties"]


def test_an_lmi_lines_package_is_the_adapter_archive_itself(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An adapter component loads the archive through the adapter API: no LMI repack (which
    # would need the archive in S3 and write models/<version>/lmi/).
    monkeypatch.setenv("SERVING_BACKEND", "lmi")
    monkeypatch.setenv("SERVING_IMAGE_URI", "lmi-image")
    handler({**EVENT, "model_line": "support"}, lambda_context())

    (summary,) = packages(env)
    package = aws.sagemaker().describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    (container,) = package["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"] == EVENT["model_data"]
    assert container["Image"] == "lmi-image"
    assert not container.get("Environment")
