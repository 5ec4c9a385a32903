"""The drift check as synthesized: the schedule and its input, the drift alarm on the notify
topic naming its runbook, and permissions no wider than its prefixes, its two tables and its
metrics namespace (the raw bucket only with ``retrain_on_drift``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns

from stacks.config import load_stage_config
from stacks.constructs.drift_check import DriftCheck
from stacks.nag import flatten_reference
from tests.infra.conftest import Assembly
from tuneloop.stack_outputs import DRIFT_CHECK_FUNCTION
from tuneloop.watch.drift_service import NAMESPACE, request_input
from tuneloop.watch.drift_settings import DriftCheckSettings


def _one(assembly: Assembly, resource_type: str, logical_prefix: str) -> tuple[str, Any]:
    (found,) = [
        (key.split("/")[1], resource)
        for key, resource in assembly.resources(resource_type).items()
        if key.split("/")[1].startswith(logical_prefix)
    ]
    return found


def _function(assembly: Assembly) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (key.split("/")[1], fn)
        for key, fn in assembly.resources("AWS::Lambda::Function").items()
        if fn["Properties"]["Handler"] == "lambdas.drift_check.handler.handler"
    ]
    return found


def _statements(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy"
        and {"Ref": role_logical_id} in resource["Properties"].get("Roles", [])
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _resources(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return [flatten_reference(r) for r in (resource if isinstance(resource, list) else [resource])]


def _role_of(fn: dict[str, Any]) -> str:
    return str(fn["Properties"]["Role"]["Fn::GetAtt"][0])


def test_the_daily_schedule_sends_what_the_cli_sends(dev: Assembly) -> None:
    _, schedule = _one(dev, "AWS::Scheduler::Schedule", "DriftCheckSchedule")
    props = schedule["Properties"]
    function_id, _ = _function(dev)

    assert props["ScheduleExpression"] == "rate(1 day)"
    assert props["State"] == "ENABLED"
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    sent = json.loads(target["Input"])
    assert sent == {"trigger": "scheduled", "scheduled_time": "<aws.scheduler.scheduled-time>"}
    assert set(sent) == set(request_input())
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_the_drift_alarm_notifies_people_on_the_endpoint_and_names_its_runbook(
    dev: Assembly,
) -> None:
    _, alarm = _one(dev, "AWS::CloudWatch::Alarm", "DriftCheckDriftAlarm")
    props = alarm["Properties"]

    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
        NAMESPACE,
        "DriftDetected",
        "Maximum",
    )
    (dimension,) = props["Dimensions"]
    endpoint = dev.template("Serving")["Outputs"]["EndpointName"]["Value"]
    assert (dimension["Name"], dimension["Value"]) == ("EndpointName", endpoint)
    assert (props["Threshold"], props["ComparisonOperator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert props["TreatMissingData"] == "ignore"
    (action,) = [flatten_reference(a) for a in props["AlarmActions"]]
    assert "NotifyTopic" in action and "AlarmTopic" not in action
    assert props["AlarmDescription"].endswith("Runbook: docs/runbooks/drift.md")


def test_the_function_may_publish_only_to_the_drift_namespace(dev: Assembly) -> None:
    _, fn = _function(dev)
    statements = _statements(dev.template("Pipeline"), _role_of(fn))

    (metrics,) = [s for s in statements if "cloudwatch:PutMetricData" in _actions(s)]

    assert metrics["Resource"] == "*"
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}


def test_the_function_reads_its_prefixes_and_tables_and_writes_only_its_reports(
    dev: Assembly,
) -> None:
    _, fn = _function(dev)
    statements = _statements(dev.template("Pipeline"), _role_of(fn))

    reads = {r for s in statements if "s3:GetObject*" in _actions(s) for r in _resources(s)}
    writes = {r for s in statements if "s3:PutObject" in _actions(s) for r in _resources(s)}
    assert {r.rsplit("/", 2)[-2] for r in reads if r.endswith("/*")} == {"capture", "datasets"}
    assert all("CuratedBucket" in r for r in reads)
    assert [r.split("/", 1)[1] for r in writes] == ["watch/drift/*"]
    assert all("CuratedBucket" in r for r in writes)
    # the dev stage does not retrain on drift: nothing of the raw bucket
    assert not [r for s in statements for r in _resources(s) if "RawBucket" in r]
    table_writes = [
        a
        for s in statements
        for a in _actions(s)
        if a.startswith("dynamodb:") and a.split(":")[1].startswith(("Put", "Update", "Delete"))
    ]
    assert table_writes == []
    services = {a.split(":")[0] for s in statements for a in _actions(s)}
    assert services <= {"cloudwatch", "dynamodb", "kms", "logs", "s3", "xray"}


def test_the_function_name_is_an_output_and_its_settings_its_environment(dev: Assembly) -> None:
    function_id, fn = _function(dev)
    outputs = dev.template("Pipeline")["Outputs"]

    assert outputs[DRIFT_CHECK_FUNCTION]["Value"] == {"Ref": function_id}
    variables = fn["Properties"]["Environment"]["Variables"]
    assert DriftCheckSettings.from_json(variables["DRIFT_CHECK_SETTINGS"]) == (
        load_stage_config("dev").drift_check
    )


def _construct_template(settings: DriftCheckSettings) -> dict[str, Any]:
    """The construct alone in a stack of its own (no full app synth)."""
    app = cdk.App()
    stack = cdk.Stack(app, "DriftOnly")
    key = kms.Key(stack, "Key")
    bucket_props: dict[str, Any] = {"encryption": s3.BucketEncryption.KMS, "encryption_key": key}
    table_props: dict[str, Any] = {
        "partition_key": dynamodb.Attribute(name="key", type=dynamodb.AttributeType.STRING)
    }
    config = dataclasses.replace(load_stage_config("dev"), drift_check=settings)
    DriftCheck(
        stack,
        "DriftCheck",
        config=config,
        curated=s3.Bucket(stack, "CuratedBucket", **bucket_props),
        raw=s3.Bucket(stack, "RawBucket", **bucket_props),
        control_table=dynamodb.Table(stack, "Control", **table_props),
        model_versions_table=dynamodb.Table(stack, "ModelVersions", **table_props),
        endpoint_name="endpoint",
        notify_topic=sns.Topic(stack, "Notify"),
    )
    return dict(app.synth().get_stack_by_name("DriftOnly").template)


def test_retrain_on_drift_adds_a_put_on_its_drop_prefix_only() -> None:
    template = _construct_template(DriftCheckSettings(retrain_on_drift=True, retrain_dataset="tr"))
    (role,) = [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role" and logical_id.startswith("DriftCheckFunctionRole")
    ]
    statements = _statements(template, role)

    raw = [(sorted(_actions(s)), r) for s in statements for r in _resources(s) if "RawBucket" in r]
    assert [r.split("/", 1)[1] for _, r in raw] == ["drops/tr/drift/*"]
    (actions, _), *_ = raw
    assert "s3:PutObject" in actions and not [a for a in actions if a.startswith("s3:Get")]
