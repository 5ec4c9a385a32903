"""Incidents: the Incidents function opens one per alarm that fires, with its context, in
either order with the Rollback function; people are notified; the guard freezes deployment
after repeated automatic rollbacks (moto; SageMaker through Stubber)."""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas.incidents.handler import handler as incidents_handler
from lambdas.rollback.handler import handler as rollback_handler
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tests.integration.sagemaker_stubs import ENDPOINT_ARN, endpoint_description
from tuneloop import aws
from tuneloop.incidents import store
from tuneloop.incidents.commands import render_incident
from tuneloop.incidents.record import incident_id
from tuneloop.model_line_settings import ModelLines
from tuneloop.operations import audit
from tuneloop.operations.freeze import read_freeze
from tuneloop.operations.names import PlatformNames

__all__ = ["aws_credentials", "platform"]

ALARM_TOPIC = "arn:aws:sns:us-east-1:123456789012:tuneloop-alarms"
GOOD = {"model_version": "v0001", "endpoint_config_name": "v0001-cfg", "model_data_url": "s3://a/1"}
BAD = {"model_version": "v0002", "endpoint_config_name": "v0002-cfg", "model_data_url": "s3://a/2"}
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
# CloudWatch's own format for StateChangeTime.
FIRED_AT = NOW.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
EMPTY_DESCRIPTION = (
    "The share of empty answers is above its bound.\nRunbook: docs/runbooks/quality-empty.md"
)


def _names(platform: Platform) -> PlatformNames:
    return PlatformNames(
        stage="test",
        raw_bucket=platform.raw_bucket,
        curated_bucket=platform.curated_bucket,
        artifacts_bucket=platform.artifacts_bucket,
        records_table=platform.records_table,
        drops_table=platform.drops_table,
        model_versions_table=platform.model_versions_table,
        control_table=platform.control_table,
        benchmarks_table=platform.benchmarks_table,
        endpoint_name=platform.endpoint_name,
    )


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "rollback")
    monkeypatch.setenv("PLATFORM_NAMES", json.dumps(_names(platform).to_dict()))
    monkeypatch.setenv("ALARM_TOPIC_ARN", ALARM_TOPIC)
    monkeypatch.setenv("CONSOLE_URL", "https://console.example/")
    monkeypatch.setenv("METRIC_MINUTES_BEFORE", "30")
    return platform


@pytest.fixture
def inbox(env: Platform) -> str:
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="people")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.sns().subscribe(TopicArn=env.topic_arn, Protocol="sqs", Endpoint=arn)
    return str(url)


def received(url: str) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def alarm_message(
    name: str = "tuneloop-quality-empty",
    state: str = "ALARM",
    *,
    when: str = FIRED_AT,
    namespace: str = "TuneLoop/Endpoint",
    metric: str = "EmptyAnswer",
    description: str = EMPTY_DESCRIPTION,
) -> dict[str, Any]:
    return {
        "AlarmName": name,
        "AlarmDescription": description,
        "NewStateValue": state,
        "OldStateValue": "OK" if state == "ALARM" else "ALARM",
        "NewStateReason": "Threshold Crossed: 1 datapoint [0.9] was greater than 0.2",
        "StateChangeTime": when,
        "Trigger": {
            "MetricName": metric,
            "Namespace": namespace,
            "Statistic": "AVERAGE",
            "Dimensions": [{"name": "EndpointName", "value": "tuneloop-endpoint"}],
            "Period": 60,
            "EvaluationPeriods": 1,
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0.2,
        },
    }


def sns_event(message: dict[str, Any], topic: str) -> dict[str, Any]:
    return {"Records": [{"Sns": {"TopicArn": topic, "Message": json.dumps(message)}}]}


def put_versions(platform: Platform) -> None:
    """v0002 in production (one more drop, a new learning rate), v0001 its last-known-good."""
    s3 = aws.s3()
    for version, drops, lr in (("v0001", {"d1": 10}, 1e-4), ("v0002", {"d1": 10, "d2": 7}, 3e-3)):
        uri = f"s3://{platform.curated_bucket}/datasets/{version}"
        manifest = {"drops": drops, "record_count": sum(drops.values())}
        s3.put_object(
            Bucket=platform.curated_bucket,
            Key=f"datasets/{version}/manifest.json",
            Body=json.dumps(manifest).encode(),
        )
        status = "production" if version == "v0002" else "deployed"
        aws.table(platform.model_versions_table).put_item(
            Item={
                "model_version": version,
                "status": status,
                "dataset_s3_uri": uri,
                "record_count": sum(drops.values()),
                "created_at": NOW.isoformat(),
                "created_month": NOW.isoformat()[:7],
                "promoted_at": NOW.isoformat(),
                "gate_approved": True,
                "gate_summary": f"approved at lr {lr}",
            }
        )
    aws.table(platform.control_table).put_item(
        Item={"key": "production", **BAD, "last_known_good": GOOD}
    )


def put_metric(values: list[float]) -> None:
    cloudwatch = aws.client("cloudwatch")
    for minutes_ago, value in enumerate(reversed(values)):
        cloudwatch.put_metric_data(
            Namespace="TuneLoop/Endpoint",
            MetricData=[
                {
                    "MetricName": "EmptyAnswer",
                    "Dimensions": [{"Name": "EndpointName", "Value": "tuneloop-endpoint"}],
                    "Timestamp": NOW - datetime.timedelta(minutes=minutes_ago),
                    "Value": value,
                }
            ],
        )


def roll_back(platform: Platform, message: dict[str, Any]) -> dict[str, Any]:
    with Stubber(aws.sagemaker()) as stub:
        stub.add_response(
            "describe_endpoint",
            endpoint_description(platform.endpoint_name, BAD["endpoint_config_name"]),
            {"EndpointName": platform.endpoint_name},
        )
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": ENDPOINT_ARN},
            {
                "EndpointName": platform.endpoint_name,
                "EndpointConfigName": GOOD["endpoint_config_name"],
            },
        )
        result = rollback_handler(sns_event(message, ALARM_TOPIC), lambda_context())
        stub.assert_no_pending_responses()
    return result


@pytest.mark.parametrize("rollback_first", [True, False])
def test_a_quality_alarm_opens_one_incident_that_explains_it(
    env: Platform, inbox: str, rollback_first: bool
) -> None:
    # Given v0002 in production over v0001, and its empty-answer rate rising
    put_versions(env)
    put_metric([0.0, 0.1, 0.9])
    message = alarm_message()
    event = sns_event(message, ALARM_TOPIC)

    # When the alarm reaches both subscribers, in either order (and the Incidents function twice)
    if rollback_first:
        assert roll_back(env, message)["action"] == "rolled_back"
    opened = incidents_handler(event, lambda_context())["results"]
    again = incidents_handler(event, lambda_context())["results"]
    if not rollback_first:
        assert roll_back(env, message)["action"] == "rolled_back"

    # Then one incident says what fired, which version served, what changed and what was done
    key = incident_id(message["AlarmName"], FIRED_AT)
    assert [r["action"] for r in opened] == ["opened"] and opened[0]["incident_id"] == key
    assert [r["action"] for r in again] == ["duplicate"]
    (incident,) = store.list_incidents(env.incidents_table)
    assert incident.incident_id == key and incident.status == "open"
    assert incident.runbook == "docs/runbooks/quality-empty.md"
    assert incident.summary == "The share of empty answers is above its bound."
    assert incident.production["model_version"] == "v0002"
    assert incident.last_known_good == {"model_version": "v0001"}
    assert [v["value"] for v in incident.metric_values] == [0.0, 0.1, 0.9]
    changes = incident.changes
    assert changes["against"] == "v0001" and changes["record_count"] == [10, 17]
    assert [d["drop_id"] for d in changes["drops_added"]] == ["d2"]
    (action,) = incident.automatic_actions
    assert (action["action"], action["from_version"], action["to_version"]) == (
        "rollback",
        "v0002",
        "v0001",
    )
    events = [e["event"] for e in incident.timeline]
    assert events.count("opened") == 1 and "rolled_back" in events and "notified" in events
    # And people got a message they can read, with the console link
    announced = [m for m in received(inbox) if m["Subject"].startswith("TuneLoop incident")]
    (note,) = announced
    assert "v0002" in note["Message"] and "docs/runbooks/quality-empty.md" in note["Message"]
    assert f"https://console.example/incidents/{key}" in note["Message"]
    assert "d2 (7 records)" in note["Message"]


def test_an_alarm_during_a_deployment_names_the_version_being_deployed(
    env: Platform, inbox: str
) -> None:
    # Given v0001 in production and v0002 being deployed (a canary under way)
    put_versions(env)
    aws.table(env.model_versions_table).update_item(
        Key={"model_version": "v0002"},
        UpdateExpression="SET #s = :s, deploy_started_at = :at",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "deploying", ":at": NOW.isoformat()},
    )
    aws.table(env.control_table).put_item(Item={"key": "production", **GOOD})
    put_metric([0.0, 0.9])

    # When the alarm fires
    message = alarm_message()
    (opened,) = incidents_handler(sns_event(message, ALARM_TOPIC), lambda_context())["results"]

    # Then the incident names both, and its changes are the candidate's against production
    incident = store.get_incident(env.incidents_table, opened["incident_id"])
    assert incident.production["model_version"] == "v0001"
    assert incident.deploying == {"model_version": "v0002", "since": NOW.isoformat()}
    assert incident.changes["against"] == "v0001"
    assert [d["drop_id"] for d in incident.changes["drops_added"]] == ["d2"]
    (note,) = [m for m in received(inbox) if m["Subject"].startswith("TuneLoop incident")]
    assert "Being deployed when it fired: v0002" in note["Message"]
    assert "being deployed when it fired: v0002" in render_incident(incident)


def test_a_notify_only_alarm_opens_an_incident_and_ok_is_added(env: Platform) -> None:
    dlq = alarm_message(
        "tuneloop-ingest-dlq",
        namespace="AWS/SQS",
        metric="ApproximateNumberOfMessagesVisible",
        description="Messages in the DLQ.\nRunbook: docs/runbooks/ingest-dlq.md",
    )
    (opened,) = incidents_handler(sns_event(dlq, env.topic_arn), lambda_context())["results"]
    assert opened["action"] == "opened"
    incident = store.get_incident(env.incidents_table, opened["incident_id"])
    assert incident.production == {} and incident.automatic_actions == ()
    assert incident.to_dict()["metric"]["name"] == "ApproximateNumberOfMessagesVisible"

    ok = alarm_message("tuneloop-ingest-dlq", "OK", when=FIRED_AT.replace(":00.000", ":30.000"))
    (ended,) = incidents_handler(sns_event(ok, env.topic_arn), lambda_context())["results"]
    assert ended == {
        "alarm_name": "tuneloop-ingest-dlq",
        "state": "OK",
        "action": "updated",
        "incident_id": opened["incident_id"],
    }
    events = [
        e["event"] for e in store.get_incident(env.incidents_table, ended["incident_id"]).timeline
    ]
    assert events[-1] == "ok"


def test_other_messages_on_the_topics_are_ignored(env: Platform) -> None:
    event = {"Records": [{"Sns": {"TopicArn": env.topic_arn, "Message": "rolled back v2"}}]}
    assert incidents_handler(event, lambda_context())["results"] == [
        {"action": "ignored", "reason": "not an alarm notification"}
    ]
    assert store.list_incidents(env.incidents_table) == []


class _Hook(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_a_webhook_named_by_a_secret_gets_the_message(
    env: Platform, webhook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.client("secretsmanager").create_secret(
        Name="tuneloop/chat", SecretString=json.dumps({"url": webhook})
    )
    monkeypatch.setenv("WEBHOOK_SECRET_NAME", "tuneloop/chat")
    (opened,) = incidents_handler(sns_event(alarm_message(), env.topic_arn), lambda_context())[
        "results"
    ]
    assert opened["notified"] == ["sns", "webhook"]
    (body,) = _Hook.bodies
    assert body["text"].startswith(f"TuneLoop incident {opened['incident_id']}")


def test_an_unreachable_webhook_is_on_the_timeline_and_sns_still_notified(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.client("secretsmanager").create_secret(
        Name="tuneloop/chat", SecretString="http://127.0.0.1:9/nothing-listens"
    )
    monkeypatch.setenv("WEBHOOK_SECRET_NAME", "tuneloop/chat")
    (opened,) = incidents_handler(sns_event(alarm_message(), env.topic_arn), lambda_context())[
        "results"
    ]
    assert opened["notified"] == ["sns"]
    incident = store.get_incident(env.incidents_table, opened["incident_id"])
    (notified,) = [e for e in incident.timeline if e["event"] == "notified"]
    assert "failed: webhook" in notified["text"]


def test_the_third_automatic_rollback_in_a_day_freezes_deployment(
    env: Platform, inbox: str
) -> None:
    results = []
    for attempt in range(3):
        put_versions(env)  # the bad version back in production, as a new deployment does
        when = (NOW + datetime.timedelta(minutes=attempt)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        results.append(roll_back(env, alarm_message(when=when)))
    assert [r["action"] for r in results] == ["rolled_back"] * 3
    assert [r.get("frozen") for r in results] == [None, None, "true"]
    assert [r["automatic_rollbacks_in_window"] for r in results] == ["1", "2", "3"]
    freeze = read_freeze(env.control_table)
    assert freeze.frozen and "3 automatic rollbacks within 24 h" in freeze.reason
    (record,) = audit.list_records(env.audit_table, action="freeze")
    assert record.source == "pipeline" and record.after["by"] == "repeated-failure guard"
    last = incident_id("tuneloop-quality-empty", when)
    incident = store.get_incident(env.incidents_table, last)
    assert [a["action"] for a in incident.automatic_actions] == ["rollback", "freeze"]
    subjects = [m["Subject"] for m in received(inbox)]
    assert any("automatic deployment frozen" in s for s in subjects)


def test_a_model_lines_alarm_names_the_lines_production(
    env: Platform, inbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stage with the lines support and search: support serves v0002 over v0001, the
    # endpoint's own production item holds something else (it is not what a line serves)
    lines = ModelLines.parse(
        [{"name": "support", "datasets": ["a"]}, {"name": "search", "datasets": ["b"]}]
    )
    names = replace(_names(env), model_lines=lines.to_json())
    monkeypatch.setenv("PLATFORM_NAMES", json.dumps(names.to_dict()))
    put_versions(env)
    table = aws.table(env.control_table)
    table.put_item(Item={"key": "production#support", **BAD, "last_known_good": GOOD})
    table.put_item(Item={"key": "production", "model_version": "v0009", "model_data_url": "x"})
    # ... and a support version being deployed on search's line would not count for it
    aws.table(env.model_versions_table).put_item(
        Item={
            "model_version": "v0003-search",
            "status": "deploying",
            "model_line": "search",
            "created_month": NOW.isoformat()[:7],
            "created_at": NOW.isoformat(),
        }
    )

    # When support's component alarm fires
    message = alarm_message(name="tuneloop-line-support-empty")
    message["Trigger"]["Dimensions"].append({"name": "InferenceComponentName", "value": "support"})
    (opened,) = incidents_handler(sns_event(message, ALARM_TOPIC), lambda_context())["results"]

    # Then the incident names support's production and last-known-good, not the endpoint's
    incident = store.get_incident(env.incidents_table, opened["incident_id"])
    assert incident.production["model_version"] == "v0002"
    assert incident.production["model_line"] == "support"
    assert incident.last_known_good == {"model_version": "v0001"}
    assert incident.deploying == {}
    assert "on model line support" in render_incident(incident)
    (note,) = [m for m in received(inbox) if m["Subject"].startswith("TuneLoop incident")]
    assert "Version in production: v0002" in note["Message"]
    assert "on model line support" in note["Message"]
