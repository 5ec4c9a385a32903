"""With model lines, the synthesized retrain state machine carries the run's line from its
input to every step that acts for it, and the steps get the lines (dev stage, two lines)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import MODEL_LINES, Assembly
from tests.infra.test_lambdas import _functions
from tests.infra.test_state_machine import _definition
from tuneloop.model_line_settings import ModelLines

LINE_PATH = "$.dataset.model_line"


@pytest.fixture(scope="module")
def states(dev_lines: Assembly) -> dict[str, Any]:
    return dict(_definition(dev_lines)[0]["States"])


def test_prepare_dataset_gets_the_run_input_whole(states: dict[str, Any]) -> None:
    # The whole input (the Lambda task passes Parameters as its payload), so a run started
    # without model_line still resolves (moto runs it:
    # tests/integration/test_retrain_input_moto.py)
    assert states["PrepareDataset"]["Parameters"] == {
        "execution_name.$": "$$.Execution.Name",
        "execution_arn.$": "$$.Execution.Id",
        "input.$": "$$.Execution.Input",
    }
    assert states["PrepareDataset"]["ResultPath"] == "$.dataset"


@pytest.mark.parametrize("state", ["Gate", "Register", "Deploy", "ConfirmDeployment"])
def test_each_step_of_the_line_gets_model_line(states: dict[str, Any], state: str) -> None:
    assert states[state]["Parameters"]["model_line.$"] == LINE_PATH


@pytest.mark.parametrize("state", ["Notify", "NotifyRejected"])
def test_the_notifications_name_the_line(states: dict[str, Any], state: str) -> None:
    message = states[state]["Parameters"]["Message"]
    assert message["model_line.$"] == LINE_PATH


def test_the_failure_notification_carries_the_run_input(states: dict[str, Any]) -> None:
    # $.dataset may not exist when PrepareDataset itself failed
    message = states["NotifyFailure"]["Parameters"]["Message"]
    assert message["execution_input.$"] == "$$.Execution.Input"
    assert LINE_PATH not in json.dumps(message)


@pytest.mark.parametrize(
    "function", ["ingest", "retrain_trigger", "prepare_dataset", "gate", "register"]
)
def test_the_run_steps_get_the_lines(dev_lines: Assembly, function: str) -> None:
    variables = _functions(dev_lines)[function]["Environment"]["Variables"]
    assert ModelLines.from_json(variables["MODEL_LINES"]) == ModelLines.parse(MODEL_LINES)


def test_without_lines_the_steps_get_none(dev: Assembly) -> None:
    functions = _functions(dev)
    for function in ("ingest", "retrain_trigger", "prepare_dataset", "gate", "register"):
        assert functions[function]["Environment"]["Variables"]["MODEL_LINES"] == "[]"
