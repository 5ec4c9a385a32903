"""moto's Step Functions interpreter passes the run's input whole, as PrepareDataset's
payload takes it (``"input.$": "$$.Execution.Input"``), with or without a model line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from tests.integration.aws_fixtures import ACCOUNT, aws_credentials
from tuneloop import aws

__all__ = ["aws_credentials"]

# PrepareDataset's Parameters as the retrain state machine renders them (a Pass state here:
# tests/infra/test_state_machine_lines.py pins the synthesized ones).
DEFINITION = {
    "StartAt": "PrepareDataset",
    "States": {
        "PrepareDataset": {
            "Type": "Pass",
            "Parameters": {
                "execution_name.$": "$$.Execution.Name",
                "input.$": "$$.Execution.Input",
            },
            "ResultPath": "$.dataset",
            "End": True,
        }
    },
}


@pytest.fixture
def state_machine(aws_credentials: None) -> Iterator[str]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield aws.stepfunctions().create_state_machine(
            name="retrain",
            definition=json.dumps(DEFINITION),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/tuneloop-states",
        )["stateMachineArn"]


def run(state_machine: str, name: str, run_input: dict[str, Any]) -> dict[str, Any]:
    sfn = aws.stepfunctions()
    arn = sfn.start_execution(
        stateMachineArn=state_machine, name=name, input=json.dumps(run_input)
    )["executionArn"]
    for _ in range(100):
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            assert described["status"] == "SUCCEEDED", described
            return dict(json.loads(described["output"]))
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish")


@pytest.mark.parametrize(
    "run_input",
    [{"trigger": "manual", "model_line": "support"}, {"trigger": "threshold"}],
    ids=["with a line", "without a line"],
)
def test_the_run_input_reaches_prepare_dataset_whole(
    state_machine: str, run_input: dict[str, Any]
) -> None:
    output = run(state_machine, "v0001-20260101-000000-x", run_input)

    assert output["dataset"] == {"execution_name": "v0001-20260101-000000-x", "input": run_input}
