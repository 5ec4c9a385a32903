"""Retrain trigger with model lines against moto: one run per line, the line's counter only."""

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
from tuneloop import aws
from tuneloop.ingest.drops import DropsTable
from tuneloop.model_line_settings import ModelLineError, ModelLines
from tuneloop.retrain import pending_attributes, start_retrain_if_due, untrained_dataset_note

__all__ = ["aws_credentials", "platform"]

LINES = ModelLines.parse(
    [
        {"name": "support", "datasets": ["acme_support"]},
        {"name": "search", "datasets": ["wiki", "intranet"]},
        {"name": "mixed", "datasets": ["wiki"]},
    ]
)


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "retrain_trigger")  # threshold 3
    monkeypatch.setenv("MODEL_LINES", LINES.to_json())
    return platform


def set_pending(platform: Platform, **per_line: int) -> None:
    aws.table(platform.control_table).put_item(
        Item={"key": "retrain", **{f"pending_records#{k}": v for k, v in per_line.items()}}
    )


def retrain_item(platform: Platform) -> dict[str, Any]:
    return aws.table(platform.control_table).get_item(Key={"key": "retrain"})["Item"]


def only_execution(platform: Platform) -> dict[str, Any]:
    (execution,) = aws.stepfunctions().list_executions(stateMachineArn=platform.state_machine_arn)[
        "executions"
    ]
    described = aws.stepfunctions().describe_execution(executionArn=execution["executionArn"])
    return {"name": execution["name"], "input": json.loads(described["input"])}


def test_the_line_with_the_most_pending_records_is_trained(env: Platform) -> None:
    # Given two lines over the threshold and one below it
    set_pending(env, support=4, search=7, mixed=1)

    # When ingest's threshold trigger runs
    result = handler({"trigger": "threshold"}, lambda_context())

    # Then one run starts, for search, named after it, with the line in its input
    assert result["started"] is True
    assert (result["model_line"], result["pending_records"]) == ("search", 7)
    run = only_execution(env)
    assert run["name"].startswith("v0001-") and run["name"].endswith("-search")
    assert run["input"] == {"trigger": "threshold", "model_line": "search"}
    # ... and only search's counter is counted off
    item = retrain_item(env)
    assert (item["pending_records#search"], item["pending_records#support"]) == (0, 4)
    assert item["pending_records#mixed"] == 1
    assert item["last_model_line"] == "search"
    assert "pending_records" not in item


def test_no_line_at_the_threshold_starts_nothing_and_says_why(env: Platform) -> None:
    set_pending(env, support=2, search=1)

    result = handler({"trigger": "threshold"}, lambda_context())

    assert result["started"] is False
    assert result["reason"] == (
        "no model line has enough new records (support: 2, search: 1, mixed: 0; threshold needs 3)"
    )
    assert (
        aws.stepfunctions().list_executions(stateMachineArn=env.state_machine_arn)["executions"]
        == []
    )


def test_the_schedule_trains_a_line_below_the_threshold(env: Platform) -> None:
    set_pending(env, support=1)

    result = handler({"source": "aws.events", "detail-type": "Scheduled Event"}, lambda_context())

    assert (result["started"], result["model_line"]) == (True, "support")
    assert only_execution(env)["input"] == {"trigger": "schedule", "model_line": "support"}


def test_the_schedule_with_nothing_pending_starts_nothing(env: Platform) -> None:
    result = handler({"trigger": "schedule"}, lambda_context())

    assert result["started"] is False
    assert "schedule needs 1" in result["reason"]


def test_a_manual_run_must_name_a_line(env: Platform) -> None:
    with pytest.raises(ModelLineError, match=r"name the model line.*support, search, mixed"):
        handler({"force": True}, lambda_context())
    with pytest.raises(ModelLineError, match=r"no model line 'chat' \(lines: support, search"):
        handler({"force": True, "model_line": "chat"}, lambda_context())


def test_a_manual_run_of_a_line_starts_without_pending_records(env: Platform) -> None:
    set_pending(env, search=9)

    result = handler({"force": True, "model_line": "support"}, lambda_context())

    assert (result["started"], result["model_line"]) == (True, "support")
    assert only_execution(env)["input"] == {"trigger": "manual", "model_line": "support"}
    assert retrain_item(env)["pending_records#search"] == 9


def test_one_run_at_a_time_across_lines(env: Platform) -> None:
    set_pending(env, support=5, search=4)
    handler({}, lambda_context())

    result = handler({"trigger": "threshold"}, lambda_context())

    assert result["started"] is False
    assert "still running" in result["reason"]
    assert result["model_line"] == "search"
    assert retrain_item(env)["pending_records#search"] == 4


def test_a_line_on_a_deployment_without_lines_is_refused(platform: Platform) -> None:
    with pytest.raises(ModelLineError, match="has no model lines"):
        start_retrain_if_due(
            control_table=platform.control_table,
            state_machine_arn=platform.state_machine_arn,
            threshold=1,
            trigger="manual",
            force=True,
            model_line="support",
        )


def test_ingest_counts_a_drop_for_each_line_of_its_dataset(platform: Platform) -> None:
    # Given drops of a dataset two lines list, of one line's, and of no line's
    drops = DropsTable(platform.drops_table)
    for drop_id, dataset, stored in (("d1", "wiki", 3), ("d2", "acme_support", 2), ("d3", "hr", 5)):
        aws.table(platform.drops_table).put_item(Item={"drop_id": drop_id, "status": "processing"})
        # When each completes with its lines' counters
        finished = drops.complete(
            drop_id,
            {"stored": stored},
            control_table=platform.control_table,
            stored=stored,
            pending=pending_attributes(dataset, LINES),
        )
        assert finished is True

    # Then each line counts its datasets' records; the hr records count nowhere
    item = retrain_item(platform)
    assert {k: int(v) for k, v in item.items() if k.startswith("pending")} == {
        "pending_records#search": 3,
        "pending_records#mixed": 3,
        "pending_records#support": 2,
    }
    assert untrained_dataset_note("hr", LINES) == (
        "dataset 'hr' is in no model line's datasets (lines: support, search, mixed): "
        "their records are stored but train no model line"
    )
    assert untrained_dataset_note("wiki", LINES) == ""


def test_without_lines_ingest_keeps_the_one_counter() -> None:
    assert pending_attributes("anything", ModelLines()) == ("pending_records",)
    assert untrained_dataset_note("anything", ModelLines()) == ""
