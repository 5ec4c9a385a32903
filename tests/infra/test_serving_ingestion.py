"""Serving alarms and rollback wiring; ingestion queue wiring."""

from __future__ import annotations

import re
from typing import Any

from tests.infra.conftest import Assembly


def _alarms(assembly: Assembly, stack: str) -> dict[str, dict[str, Any]]:
    return {
        props["MetricName"]: props
        for resource in assembly.template(stack)["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        for props in [resource["Properties"]]
        if props["Namespace"] != "TuneLoop/Endpoint"  # quality alarms: test_watch_quality.py
    }


def test_endpoint_alarms_watch_the_generated_endpoint(dev: Assembly) -> None:
    alarms = _alarms(dev, "Serving")
    assert set(alarms) == {"Invocation5XXErrors", "ModelLatency"}
    errors, latency = alarms["Invocation5XXErrors"], alarms["ModelLatency"]
    assert (errors["Statistic"], errors["Period"], errors["Threshold"]) == ("Sum", 60, 5)
    assert (latency["ExtendedStatistic"], latency["Period"]) == ("p99", 60)
    assert latency["Threshold"] == 5_000_000  # 5 s in microseconds
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/SageMaker"
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dims["VariantName"] == "AllTraffic"
        # generated, lower-case, and valid as a SageMaker endpoint name
        assert re.fullmatch(r"[a-z0-9](-*[a-z0-9]){0,62}", dims["EndpointName"])
        assert "endpoint" in dims["EndpointName"]
        assert "AlarmName" not in alarm
        (action,) = alarm["AlarmActions"]
        assert action["Ref"].startswith("NotificationsAlarmTopic")


def test_rollback_lambda_is_subscribed_to_the_alarm_topic(dev: Assembly) -> None:
    resources = dev.template("Serving")["Resources"]
    (subscription,) = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"
    ]
    assert subscription["Protocol"] == "lambda"
    assert subscription["TopicArn"]["Ref"].startswith("NotificationsAlarmTopic")
    assert subscription["Endpoint"]["Fn::GetAtt"][0].startswith("RollbackFunction")
    topics = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SNS::Topic"]
    assert len(topics) == 2 and all("KmsMasterKeyId" in t for t in topics)
    assert any(r["Type"] == "AWS::CloudWatch::Dashboard" for r in resources.values())


def test_drop_events_reach_the_ingest_lambda_through_a_queue(dev: Assembly) -> None:
    resources = dev.template("Ingestion")["Resources"]
    rules = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Events::Rule"]
    (drops,) = [r for r in rules if "EventPattern" in r]
    pattern = drops["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"] == {"key": [{"prefix": "drops/"}]}
    (target,) = drops["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("IngestQueue")
    (schedule,) = [r for r in rules if "ScheduleExpression" in r]
    assert schedule["ScheduleExpression"] == "rate(1 day)"
    (mapping,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queues = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::Queue"]
    assert len(queues) == 2 and all("KmsMasterKeyId" in q for q in queues)
    (with_dlq,) = [q for q in queues if "RedrivePolicy" in q]
    assert with_dlq["RedrivePolicy"]["maxReceiveCount"] == 5
    (dlq_alarm,) = _alarms(dev, "Ingestion").values()
    assert dlq_alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
