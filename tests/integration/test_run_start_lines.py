"""`tuneloop runs start --line` over moto: a manual run of one model line."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.integration.aws_fixtures import Platform, aws_credentials, platform
from tests.integration.test_operations_cli import names_of
from tuneloop import aws
from tuneloop.model_line_settings import ModelLines
from tuneloop.operations import actions
from tuneloop.operations.actions import ActionError
from tuneloop.operations.audit import Actor
from tuneloop.operations.commands import add_parser
from tuneloop.operations.names import PlatformNames

__all__ = ["aws_credentials", "platform"]

OPERATOR = Actor(name="ops (operator)", kind="user", source="cli")
LINES = ModelLines.parse(
    [{"name": "support", "datasets": ["acme_support"]}, {"name": "search", "datasets": ["wiki"]}]
)


@pytest.fixture
def names(platform: Platform) -> PlatformNames:
    return dataclasses.replace(
        names_of(platform),
        model_lines=LINES.to_json(),
        state_machine_arn=platform.state_machine_arn,
    )


def test_a_manual_run_of_a_line_starts_that_line(names: PlatformNames) -> None:
    started = actions.start_run(names, OPERATOR, model_line="search")

    assert started.model_line == "search"
    assert started.execution_name.endswith("-search")
    described = aws.stepfunctions().describe_execution(executionArn=started.execution_arn)
    assert json.loads(described["input"]) == {"trigger": "manual", "model_line": "search"}


def test_a_manual_run_without_a_line_lists_the_lines(names: PlatformNames) -> None:
    with pytest.raises(ActionError, match="support, search") as refused:
        actions.start_run(names, OPERATOR)
    assert refused.value.exit_code == 2


def test_runs_start_takes_line() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["runs", "start", "--line", "support"])
    assert (args.runs_command, args.model_line) == ("start", "support")
