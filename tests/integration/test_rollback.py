"""Rollback: an alarm restores last-known-good (update_endpoint via Stubber, SNS in moto)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas.rollback.handler import handler
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tests.integration.sagemaker_stubs import ENDPOINT_ARN, endpoint_description
from tuneloop import aws
from tuneloop.operations import audit
from tuneloop.operations.audit import Actor
from tuneloop.release.rollback import ManualRollback

__all__ = ["aws_credentials", "platform"]

GOOD = {
    "model_version": "v0001",
    "endpoint_config_name": "v0001-config-aaaa",
    "model_data_url": "s3://a/1",
}
BAD = {
    "model_version": "v0002",
    "endpoint_config_name": "v0002-config-bbbb",
    "model_data_url": "s3://a/2",
}


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "rollback")
    return platform


@pytest.fixture
def inbox(env: Platform) -> str:
    """An SQS queue subscribed to the notification topic."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.sns().subscribe(TopicArn=env.topic_arn, Protocol="sqs", Endpoint=arn)
    return str(url)


def notifications(url: str) -> list[dict[str, Any]]:
    messages = (
        aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    )
    return [json.loads(message["Body"]) for message in messages]


def alarm_event(
    state: str = "ALARM", endpoint: str = "tuneloop-endpoint", when: str = "t1"
) -> dict[str, Any]:
    alarm = {
        "AlarmName": "tuneloop-5xx",
        "NewStateValue": state,
        "NewStateReason": "Threshold Crossed: 1 datapoint [12.0] was greater than 5.0",
        "StateChangeTime": f"2026-01-01T00:00:00.000+0000-{when}",
        "Trigger": {
            "MetricName": "Invocation5XXErrors",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [
                {"value": endpoint, "name": "EndpointName"},
                {"value": "AllTraffic", "name": "VariantName"},
            ],
        },
    }
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(alarm)}}]}


def set_production(platform: Platform, current: dict[str, str], lkg: dict[str, str] | None) -> None:
    item: dict[str, Any] = {"key": "production", **current}
    if lkg:
        item["last_known_good"] = lkg
    aws.table(platform.control_table).put_item(Item=item)
    for version, status in ((current, "production"), (lkg, "deployed")):
        if version:
            aws.table(platform.model_versions_table).put_item(
                Item={"model_version": version["model_version"], "status": status}
            )


def control(platform: Platform) -> dict[str, Any]:
    return aws.table(platform.control_table).get_item(Key={"key": "production"})["Item"]


def status(platform: Platform, model_version: str) -> str:
    item = aws.table(platform.model_versions_table).get_item(Key={"model_version": model_version})
    return str(item["Item"]["status"])


def test_an_alarm_restores_last_known_good_once(env: Platform, inbox: str) -> None:
    set_production(env, BAD, GOOD)
    sagemaker = aws.sagemaker()

    with Stubber(sagemaker) as stub:
        stub.add_response(
            "describe_endpoint",
            endpoint_description(env.endpoint_name, BAD["endpoint_config_name"]),
            {"EndpointName": env.endpoint_name},
        )
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": ENDPOINT_ARN},
            {"EndpointName": env.endpoint_name, "EndpointConfigName": GOOD["endpoint_config_name"]},
        )
        result = handler(alarm_event(), lambda_context())
        # The same notification delivered again: no SageMaker call is stubbed, none may happen.
        again = handler(alarm_event(), lambda_context())
        stub.assert_no_pending_responses()

    assert result["action"] == "rolled_back"
    assert (result["from_version"], result["to_version"]) == ("v0002", "v0001")
    assert again["action"] == "ignored"
    item = control(env)
    assert {k: item[k] for k in GOOD} == GOOD
    assert "last_known_good" not in item
    assert item["last_rollback"]["from_version"] == "v0002"
    assert (status(env, "v0002"), status(env, "v0001")) == ("rolled_back", "production")
    rolled_back = aws.table(env.model_versions_table).get_item(Key={"model_version": "v0002"})[
        "Item"
    ]
    assert rolled_back["rollback_alarm"] == "tuneloop-5xx"
    (sent,) = notifications(inbox)
    assert "rolled back" in sent["Subject"] and "v0001" in sent["Message"]
    # One audit record, by the function's IAM principal, though the alarm came twice
    (record,) = audit.list_records(env.audit_table)
    assert (record.action, record.actor_kind, record.source) == ("auto_rollback", "iam", "pipeline")
    assert record.actor.startswith("arn:aws:")
    assert record.before["model_version"] == "v0002"
    assert record.after["model_version"] == "v0001"
    assert record.after["alarm_name"] == "tuneloop-5xx"


def manual_event(request_id: str = "req-9") -> dict[str, Any]:
    return ManualRollback(
        actor=Actor(name="alice (operator)", kind="user", source="console"),
        reason="answers look wrong",
        request_id=request_id,
    ).to_event()


def test_a_manual_rollback_takes_the_alarm_path_and_names_the_person(
    env: Platform, inbox: str
) -> None:
    # Given v0002 in production with v0001 as last-known-good
    set_production(env, BAD, GOOD)
    with Stubber(aws.sagemaker()) as stub:
        stub.add_response(
            "describe_endpoint",
            endpoint_description(env.endpoint_name, BAD["endpoint_config_name"]),
            {"EndpointName": env.endpoint_name},
        )
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": ENDPOINT_ARN},
            {"EndpointName": env.endpoint_name, "EndpointConfigName": GOOD["endpoint_config_name"]},
        )
        # When an operator rolls back
        result = handler(manual_event(), lambda_context())
        stub.assert_no_pending_responses()

    # Then the endpoint, Control and the versions change as for an alarm
    assert result["action"] == "rolled_back"
    assert (result["from_version"], result["to_version"]) == ("v0002", "v0001")
    assert "alice (operator)" in result["reason"]
    assert {k: control(env)[k] for k in GOOD} == GOOD
    assert (status(env, "v0002"), status(env, "v0001")) == ("rolled_back", "production")
    # And the audit trail names the operator, with before and after
    (record,) = audit.list_records(env.audit_table)
    assert (record.action, record.actor, record.actor_kind) == (
        "rollback",
        "alice (operator)",
        "user",
    )
    assert record.request_id == "req-9"
    assert (record.before["model_version"], record.after["model_version"]) == ("v0002", "v0001")
    (sent,) = notifications(inbox)
    assert "alice (operator)" in sent["Message"]


def test_a_manual_rollback_without_last_known_good_changes_nothing(
    env: Platform, inbox: str
) -> None:
    set_production(env, GOOD, None)
    result = handler(manual_event(), lambda_context())
    assert result["action"] == "none"
    assert control(env)["model_version"] == "v0001"
    assert audit.list_records(env.audit_table) == []


def test_a_manual_event_without_an_actor_is_refused(env: Platform) -> None:
    with pytest.raises(ValueError, match="actor"):
        handler({"manual": True}, lambda_context())


def test_without_last_known_good_it_says_so_and_changes_nothing(env: Platform, inbox: str) -> None:
    set_production(env, GOOD, None)

    result = handler(alarm_event(), lambda_context())

    assert result["action"] == "none"
    assert result["reason"] == "no last-known-good; nothing to roll back"
    assert control(env)["model_version"] == "v0001"
    (sent,) = notifications(inbox)
    assert "no last-known-good; nothing to roll back" in sent["Message"]


def test_ok_transitions_and_other_endpoints_are_ignored(env: Platform, inbox: str) -> None:
    set_production(env, BAD, GOOD)

    ok = handler(alarm_event(state="OK"), lambda_context())
    other = handler(alarm_event(endpoint="someone-else"), lambda_context())

    assert (ok["action"], other["action"]) == ("ignored", "ignored")
    assert control(env)["model_version"] == "v0002"
    assert notifications(inbox) == []


def test_an_alarm_during_a_deployment_is_left_to_sagemaker_auto_rollback(
    env: Platform, inbox: str
) -> None:
    set_production(env, BAD, GOOD)
    with Stubber(aws.sagemaker()) as stub:
        stub.add_response(
            "describe_endpoint",
            endpoint_description(env.endpoint_name, BAD["endpoint_config_name"], status="Updating"),
        )
        result = handler(alarm_event(), lambda_context())

    assert result["action"] == "none"
    assert "Updating" in result["reason"]
    assert control(env)["model_version"] == "v0002"
    (sent,) = notifications(inbox)
    assert "no rollback" in sent["Message"]
