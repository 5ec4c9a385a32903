"""Incidents as synthesized: the table with its month index, the Incidents function on both
topics with no more than it reads and writes, the Rollback function's guard settings, and the
pipeline-failure alarm on the notify topic."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import Assembly
from tuneloop import stack_outputs as out


def _function(assembly: Assembly, name: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (key.split("/")[1], fn)
        for key, fn in assembly.resources("AWS::Lambda::Function").items()
        if fn["Properties"]["Handler"] == f"lambdas.{name}.handler.handler"
    ]
    return found


def _statements(assembly: Assembly, function: dict[str, Any]) -> list[dict[str, Any]]:
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in assembly.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"].get("Roles", [])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_the_incidents_table_is_listed_by_month(dev: Assembly) -> None:
    table = dev.template("Storage")["Resources"]["IncidentsTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "incident_id", "KeyType": "HASH"}]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_month"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["opened_month", "opened_at"]
    assert out.INCIDENTS_TABLE in dev.template("Storage")["Outputs"]


def test_the_function_hears_both_topics_and_writes_only_incidents(dev: Assembly) -> None:
    function_id, function = _function(dev, "incidents")
    subscriptions = [
        s["Properties"]
        for s in dev.resources("AWS::SNS::Subscription").values()
        if s["Properties"]["Protocol"] == "lambda"
        and s["Properties"]["Endpoint"] == {"Fn::GetAtt": [function_id, "Arn"]}
    ]
    topics = sorted(json.dumps(s["TopicArn"]) for s in subscriptions)
    assert len(topics) == 2 and "NotifyTopic" in topics[1] + topics[0]
    assert any("AlarmTopic" in t for t in topics)

    env = function["Properties"]["Environment"]["Variables"]
    assert {"PLATFORM_NAMES", "INCIDENTS_TABLE", "NOTIFY_TOPIC_ARN", "ALARM_TOPIC_ARN"} <= set(env)
    assert env["WEBHOOK_SECRET_NAME"] == ""  # no secret named: SNS only, no secret grant
    statements = _statements(dev, function)
    writes = {
        json.dumps(s["Resource"])
        for s in statements
        for a in _actions(s)
        if a in {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    }
    assert writes and all("IncidentsTable" in w for w in writes), writes
    actions = {a for s in statements for a in _actions(s)}
    assert "cloudwatch:GetMetricStatistics" in actions and "sns:Publish" in actions
    assert not any(a.startswith("secretsmanager:") for a in actions)
    assert out.INCIDENTS_FUNCTION in dev.template("Console")["Outputs"]


def test_rollback_records_in_incidents_and_guards_repeated_failures(dev: Assembly) -> None:
    _, function = _function(dev, "rollback")
    env = function["Properties"]["Environment"]["Variables"]
    assert env["MAX_AUTOMATIC_ROLLBACKS"] == "3" and env["ROLLBACK_WINDOW_HOURS"] == "24"
    assert "IncidentsTable" in json.dumps(env["INCIDENTS_TABLE"])


def test_a_failed_retrain_run_alarms_on_the_notify_topic(dev: Assembly) -> None:
    (alarm,) = [
        a["Properties"]
        for key, a in dev.resources("AWS::CloudWatch::Alarm").items()
        if a["Properties"].get("MetricName") == "ExecutionsFailed"
    ]
    assert alarm["Namespace"] == "AWS/States" and alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert "StateMachineArn" in json.dumps(alarm["Dimensions"])
    assert "NotifyTopic" in json.dumps(alarm["AlarmActions"])
    assert "docs/runbooks/pipeline-failure.md" in alarm["AlarmDescription"]
