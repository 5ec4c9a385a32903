"""Deliveries the emulator makes on a service's behalf obey the resource policies, as on AWS.

The emulator runs with its real enforcer (the deployed policies in moto's backends): an
alarm's action reaches a topic only if the topic's policy allows CloudWatch, and an
EventBridge rule's event reaches a queue only if the queue's policy allows EventBridge.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tuneloop.local.emulator import ACCOUNT_ID, REGION, Emulator


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(
        tmp_path_factory.mktemp("deliveries"), alarm_interval_seconds=3600, enforce_permissions=True
    ) as emulator:
        yield emulator


def _ssl_only(resource: str, service_action: str) -> dict[str, Any]:
    return {
        "Sid": "SslOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": service_action,
        "Resource": resource,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _allow(service: str, action: str, resource: str, source_arn: str) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": action,
        "Resource": resource,
        "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
    }


def _queue(name: str) -> tuple[str, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return str(url), str(arn)


def _set_queue_policy(url: str, statements: list[dict[str, Any]]) -> None:
    policy = {"Version": "2012-10-17", "Statement": statements}
    boto3.client("sqs").set_queue_attributes(
        QueueUrl=url, Attributes={"Policy": json.dumps(policy)}
    )


def _messages(url: str) -> list[Any]:
    return list(boto3.client("sqs").receive_message(QueueUrl=url).get("Messages", []))


def _alarm_topic(name: str, allow_cloudwatch: bool) -> tuple[str, str]:
    """A topic as an alarm's action, a queue subscribed to it; answers (alarm, queue URL)."""
    sns = boto3.client("sns")
    topic = sns.create_topic(Name=name)["TopicArn"]
    alarm_arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}-alarm"
    statements = [_ssl_only(topic, "sns:Publish")]
    if allow_cloudwatch:
        statements.append(_allow("cloudwatch.amazonaws.com", "sns:Publish", topic, alarm_arn))
    sns.set_topic_attributes(
        TopicArn=topic,
        AttributeName="Policy",
        AttributeValue=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    url, queue_arn = _queue(f"{name}-queue")
    _set_queue_policy(url, [_allow("sns.amazonaws.com", "sqs:SendMessage", queue_arn, topic)])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=f"{name}-alarm",
        Namespace=name,
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0.0,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=[topic],
    )
    cloudwatch.put_metric_data(Namespace=name, MetricData=[{"MetricName": "Errors", "Value": 2}])
    return f"{name}-alarm", url


def test_an_alarm_reaches_a_topic_whose_policy_allows_cloudwatch(aws: Emulator) -> None:
    # Given a topic whose policy allows CloudWatch to publish for this alarm
    alarm, queue = _alarm_topic("allowing", allow_cloudwatch=True)
    # When the alarm fires, Then its message reaches the topic's subscriber
    assert alarm in aws.alarms.evaluate_once()
    delivered = _messages(queue)
    assert delivered and alarm in delivered[0]["Body"]


def test_an_alarm_cannot_publish_where_the_topic_policy_holds_only_the_ssl_deny(
    aws: Emulator,
) -> None:
    # Given a topic whose policy holds only the SSL-only Deny (SNS's default policy replaced)
    alarm, queue = _alarm_topic("ssl-only", allow_cloudwatch=False)
    # When the alarm fires
    assert alarm in aws.alarms.evaluate_once()
    # Then nothing is delivered, and the refusal names CloudWatch and the topic
    assert _messages(queue) == []
    refused = [d for d in aws.enforcer.denials if d.caller == "cloudwatch.amazonaws.com"]
    assert refused and "sns:Publish" in refused[-1].message
    assert "ssl-only" in refused[-1].message


def _rule_to_queue(name: str) -> tuple[str, str, str]:
    url, queue_arn = _queue(name)
    events = boto3.client("events")
    rule_arn = events.put_rule(Name=name, EventPattern=json.dumps({"source": [name]}))["RuleArn"]
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return url, queue_arn, str(rule_arn)


def _put_event(source: str) -> None:
    entry: Any = {"Source": source, "DetailType": "Object Created", "Detail": "{}"}
    boto3.client("events").put_events(Entries=[entry])


def test_eventbridge_delivers_to_a_queue_only_if_its_policy_allows_the_rule(
    aws: Emulator,
) -> None:
    # Given a rule targeting a queue with no policy
    url, queue_arn, rule_arn = _rule_to_queue("events-target")
    # When an event matches, Then it is dropped: no policy allows events.amazonaws.com
    _put_event("events-target")
    assert _messages(url) == []
    assert any(d.caller == "events.amazonaws.com" for d in aws.enforcer.denials)
    # When the queue's policy allows EventBridge for this rule, Then the event arrives
    _set_queue_policy(url, [_allow("events.amazonaws.com", "sqs:SendMessage", queue_arn, rule_arn)])
    _put_event("events-target")
    assert len(_messages(url)) == 1


def test_eventbridge_cannot_deliver_for_another_rule(aws: Emulator) -> None:
    # Given a queue whose policy allows EventBridge only for a different rule
    url, queue_arn, _ = _rule_to_queue("events-other")
    other = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/someone-else"
    _set_queue_policy(url, [_allow("events.amazonaws.com", "sqs:SendMessage", queue_arn, other)])
    # When an event matches this rule, Then it is dropped (aws:SourceArn does not match)
    _put_event("events-other")
    assert _messages(url) == []
