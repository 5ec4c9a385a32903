"""RecordFailure against moto: the failed run's error, readable and bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.record_failure.handler import handler
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tuneloop import aws
from tuneloop.release.failures import MAX_CAUSE_CHARS

__all__ = ["aws_credentials", "platform"]


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "record_failure")
    return platform


def version(platform: Platform, model_version: str) -> dict[str, Any]:
    return aws.table(platform.model_versions_table).get_item(Key={"model_version": model_version})[
        "Item"
    ]


def test_a_lambda_error_is_stored_without_its_stack_trace(env: Platform) -> None:
    aws.table(env.model_versions_table).put_item(
        Item={"model_version": "v0003", "status": "training"}
    )
    cause = json.dumps(
        {
            "errorMessage": "no stored records in table Records",
            "errorType": "EmptyDatasetError",
            "stackTrace": ['  File "/var/task/handler.py", line 1'],
        }
    )

    result = handler(
        {"model_version": "v0003", "error": {"Error": "EmptyDatasetError", "Cause": cause}},
        lambda_context(),
    )

    expected_cause = "EmptyDatasetError: no stored records in table Records"
    assert result == {
        "model_version": "v0003",
        "status": "failed",
        "error": "EmptyDatasetError",
        "cause": expected_cause,
        "message": f"TuneLoop run v0003 failed: EmptyDatasetError: {expected_cause}",
    }
    item = version(env, "v0003")
    assert (item["status"], item["error"], item["cause"]) == (
        "failed",
        "EmptyDatasetError",
        expected_cause,
    )


def test_a_training_job_failure_keeps_the_failure_reason(env: Platform) -> None:
    cause = json.dumps({"TrainingJobName": "v0003-train", "FailureReason": "AlgorithmError: OOM"})
    result = handler(
        {"execution_name": "v0003", "error": {"Error": "States.TaskFailed", "Cause": cause}},
        lambda_context(),
    )
    assert result["cause"] == "v0003-train: AlgorithmError: OOM"
    assert version(env, "v0003")["status"] == "failed"


def test_long_causes_are_truncated_and_say_so(env: Platform) -> None:
    result = handler(
        {"model_version": "v0004", "error": {"Error": "States.Runtime", "Cause": "x" * 50_000}},
        lambda_context(),
    )
    assert len(result["cause"]) <= MAX_CAUSE_CHARS + 40
    assert result["cause"].endswith("more characters]")
    assert version(env, "v0004")["cause"] == result["cause"]


def test_a_model_in_production_keeps_its_status(env: Platform) -> None:
    aws.table(env.model_versions_table).put_item(
        Item={"model_version": "v0005", "status": "production"}
    )
    result = handler(
        {"model_version": "v0005", "error": {"Error": "SNS.Throttled", "Cause": "slow down"}},
        lambda_context(),
    )
    item = version(env, "v0005")
    assert (result["status"], item["status"], item["error"]) == (
        "production",
        "production",
        "SNS.Throttled",
    )
