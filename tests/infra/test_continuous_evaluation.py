"""Continuous evaluation as synthesized: the schedule and its input, the regression alarm on
the notify topic, and permissions no wider than starting the benchmark run machine."""

from __future__ import annotations

import json
from typing import Any

from stacks.nag import flatten_reference
from tests.infra.conftest import Assembly
from tuneloop.watch.evaluation import NAMESPACE, schedule_input


def _one(assembly: Assembly, resource_type: str, logical_prefix: str) -> tuple[str, Any]:
    (found,) = [
        (key.split("/")[1], resource)
        for key, resource in assembly.resources(resource_type).items()
        if key.split("/")[1].startswith(logical_prefix)
    ]
    return found


def _statements(assembly: Assembly, role_logical_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in assembly.resources("AWS::IAM::Policy").values()
        if {"Ref": role_logical_id} in policy["Properties"].get("Roles", [])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _function(assembly: Assembly, name: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (key.split("/")[1], fn)
        for key, fn in assembly.resources("AWS::Lambda::Function").items()
        if fn["Properties"]["Handler"] == f"lambdas.{name}.handler.handler"
    ]
    return found


def test_the_daily_schedule_sends_what_the_cli_sends(dev: Assembly) -> None:
    _, schedule = _one(dev, "AWS::Scheduler::Schedule", "ContinuousEvaluationSchedule")
    props = schedule["Properties"]
    function_id, _ = _function(dev, "continuous_evaluation")

    assert props["ScheduleExpression"] == "rate(1 day)"
    assert props["State"] == "ENABLED"
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    sent = json.loads(target["Input"])
    assert sent == {"trigger": "scheduled", "scheduled_time": "<aws.scheduler.scheduled-time>"}
    assert set(sent) == set(schedule_input())
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_the_regression_alarm_notifies_people_and_names_its_runbook(dev: Assembly) -> None:
    _, alarm = _one(dev, "AWS::CloudWatch::Alarm", "ContinuousEvaluationRegressionAlarm")
    props = alarm["Properties"]

    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
        NAMESPACE,
        "Regression",
        "Maximum",
    )
    assert "Dimensions" not in props
    assert (props["Threshold"], props["ComparisonOperator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert props["TreatMissingData"] == "ignore"
    (action,) = [flatten_reference(a) for a in props["AlarmActions"]]
    assert "NotifyTopic" in action and "AlarmTopic" not in action
    first, rest = props["AlarmDescription"].split("\n", 1)
    assert first == (
        "The production model scored worse than at its gate on a scheduled re-evaluation."
    )
    assert "docs/runbooks/evaluation-regression.md" in rest


def test_the_function_may_only_read_and_start_the_benchmark_run_machine(dev: Assembly) -> None:
    _, fn = _function(dev, "continuous_evaluation")
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = _statements(dev, role)
    machine_id, _ = _one(dev, "AWS::StepFunctions::StateMachine", "BenchmarkRunMachineStateMachine")

    states = [s for s in statements if any(a.startswith("states:") for a in _actions(s))]
    assert [(_actions(s), s["Resource"]) for s in states] == [
        (["states:StartExecution"], {"Ref": machine_id})
    ]
    writes = [
        a
        for s in statements
        for a in _actions(s)
        if a.startswith("dynamodb:") and a.split(":")[1].startswith(("Put", "Update", "Delete"))
    ]
    assert writes == []
    services = {a.split(":")[0] for s in statements for a in _actions(s)}
    assert services <= {"dynamodb", "kms", "logs", "states", "xray"}  # logs: its own group


def test_record_may_publish_only_to_the_evaluation_namespace(dev: Assembly) -> None:
    _, fn = _function(dev, "benchmark_run")
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]

    (metrics,) = [s for s in _statements(dev, role) if "cloudwatch:PutMetricData" in _actions(s)]

    assert metrics["Resource"] == "*"
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}


def test_prepare_gets_the_whole_input_so_a_scheduled_run_keeps_its_baseline(
    dev: Assembly,
) -> None:
    machine = dev.state_machine("BenchmarkRunMachine")
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    definition = json.loads("".join(p if isinstance(p, str) else "<cfn>" for p in parts))

    prepare = definition["States"]["Prepare"]["Parameters"]

    assert prepare["request.$"] == "$"
