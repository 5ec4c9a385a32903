"""Retrain trigger against moto Step Functions: threshold, one run at a time, races."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.retrain_trigger.handler import handler
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tuneloop import aws, retrain

__all__ = ["aws_credentials", "platform"]


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "retrain_trigger")  # threshold 3
    return platform


def set_pending(platform: Platform, pending: int) -> None:
    aws.table(platform.control_table).put_item(Item={"key": "retrain", "pending_records": pending})


def retrain_item(platform: Platform) -> dict[str, Any]:
    return aws.table(platform.control_table).get_item(Key={"key": "retrain"})["Item"]


def executions(platform: Platform) -> list[Any]:
    return aws.stepfunctions().list_executions(stateMachineArn=platform.state_machine_arn)[
        "executions"
    ]


def test_below_the_threshold_nothing_starts(env: Platform) -> None:
    set_pending(env, 2)

    result = handler({"trigger": "schedule"}, lambda_context())

    assert result == {
        "started": False,
        "reason": "2 new records, threshold is 3",
        "pending_records": 2,
    }
    assert executions(env) == []


def test_at_the_threshold_a_run_starts_and_the_counter_resets(env: Platform) -> None:
    set_pending(env, 3)

    result = handler({"source": "aws.events", "detail-type": "Scheduled Event"}, lambda_context())

    assert result["started"] is True
    (execution,) = executions(env)
    assert result["execution_arn"] == execution["executionArn"]
    assert execution["name"].startswith("v0001-")
    described = aws.stepfunctions().describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"trigger": "schedule"}
    item = retrain_item(env)
    assert (item["pending_records"], item["runs_started"]) == (0, 1)
    assert item["last_execution_arn"] == execution["executionArn"]


def test_while_a_run_is_running_no_second_run_starts(env: Platform) -> None:
    set_pending(env, 3)
    handler({}, lambda_context())
    aws.table(env.control_table).update_item(
        Key={"key": "retrain"},
        UpdateExpression="ADD pending_records :n",
        ExpressionAttributeValues={":n": 10},
    )

    result = handler({}, lambda_context())

    assert result["started"] is False
    assert "still running" in result["reason"]
    assert len(executions(env)) == 1
    assert retrain_item(env)["pending_records"] == 10


def test_a_manual_trigger_starts_without_enough_records(env: Platform) -> None:
    result = handler({"force": True}, lambda_context())

    assert result["started"] is True
    (execution,) = executions(env)
    described = aws.stepfunctions().describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"trigger": "manual"}


class RacingStepFunctions:
    """Step Functions client whose RUNNING check lets a competitor act first."""

    def __init__(self, platform: Platform, competitor: str) -> None:
        self.real = aws.stepfunctions()  # created before the factory is patched
        self.platform = platform
        self.competitor = competitor

    def list_executions(self, **kwargs: Any) -> Any:
        table = aws.table(self.platform.control_table)
        if self.competitor == "trigger":  # another trigger took the run
            table.update_item(
                Key={"key": "retrain"},
                UpdateExpression="SET runs_started = :one",
                ExpressionAttributeValues={":one": 1},
            )
        else:  # ingest added records meanwhile
            table.update_item(
                Key={"key": "retrain"},
                UpdateExpression="ADD pending_records :n",
                ExpressionAttributeValues={":n": 4},
            )
        return self.real.list_executions(**kwargs)

    def start_execution(self, **kwargs: Any) -> Any:
        return self.real.start_execution(**kwargs)


def test_of_two_concurrent_triggers_only_one_starts_a_run(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_pending(env, 5)
    racing = RacingStepFunctions(env, "trigger")
    monkeypatch.setattr(retrain.aws, "stepfunctions", lambda: racing)

    result = handler({}, lambda_context())

    assert result["started"] is False
    assert "another trigger" in result["reason"]
    assert executions(env) == []


def test_records_added_while_starting_stay_pending(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_pending(env, 5)
    racing = RacingStepFunctions(env, "ingest")
    monkeypatch.setattr(retrain.aws, "stepfunctions", lambda: racing)

    result = handler({}, lambda_context())

    assert result["started"] is True
    assert retrain_item(env)["pending_records"] == 4


def test_an_unknown_trigger_is_refused(env: Platform) -> None:
    with pytest.raises(ValueError, match="trigger must be one of"):
        handler({"trigger": "whenever"}, lambda_context())
