"""The stage's autoscaling settings reach Deploy, ConfirmDeployment and Rollback, whose roles
may manage exactly the endpoint variant's scalable target; a bad setting fails synth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stacks.config import ConfigError, load_stage_config
from tests.infra.conftest import Assembly, synthesize
from tuneloop.release.autoscaling import AutoscalingSettings

HANDLERS = ("deploy", "confirm_deployment", "rollback")
CONDITION = {
    "StringEquals": {
        "application-autoscaling:service-namespace": "sagemaker",
        "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount",
    }
}


def _functions(assembly: Assembly) -> dict[str, dict[str, Any]]:
    found = {}
    for fn in assembly.resources("AWS::Lambda::Function").values():
        handler = fn["Properties"]["Handler"]
        for name in HANDLERS:
            if handler == f"lambdas.{name}.handler.handler":
                found[name] = fn
    return found


def _role_statements(assembly: Assembly, function: dict[str, Any]) -> list[dict[str, Any]]:
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in assembly.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


@pytest.mark.parametrize("handler", HANDLERS)
def test_each_function_reads_the_stages_autoscaling(dev: Assembly, handler: str) -> None:
    variables = _functions(dev)[handler]["Properties"]["Environment"]["Variables"]
    settings = AutoscalingSettings.from_json(variables["AUTOSCALING_SETTINGS"])
    assert settings == load_stage_config("dev").autoscaling


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("deploy", ["application-autoscaling:RegisterScalableTarget"]),
        (
            "confirm_deployment",
            [
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:PutScalingPolicy",
            ],
        ),
        (
            "rollback",
            [
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:PutScalingPolicy",
            ],
        ),
    ],
)
def test_scalable_target_changes_are_held_to_sagemaker_variants(
    dev: Assembly, handler: str, expected: list[str]
) -> None:
    statements = _role_statements(dev, _functions(dev)[handler])
    (scaling,) = [
        s for s in statements if "application-autoscaling:RegisterScalableTarget" in _actions(s)
    ]
    assert sorted(_actions(scaling)) == sorted(expected)
    assert scaling["Condition"] == CONDITION
    assert "scalable-target/*" in str(scaling["Resource"])


def test_only_confirm_deployment_may_create_the_service_linked_role(dev: Assembly) -> None:
    functions = _functions(dev)
    creators = {
        name: s
        for name, fn in functions.items()
        for s in _role_statements(dev, fn)
        if "iam:CreateServiceLinkedRole" in _actions(s)
    }
    assert list(creators) == ["confirm_deployment"]
    statement = creators["confirm_deployment"]
    assert statement["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in str(statement["Resource"])


def test_autoscaling_outside_the_limits_fails_synth(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"autoscaling\.target_value must be a number > 0"):
        synthesize("local", tmp_path / "cdk", autoscaling='{"target_value": 0}')
