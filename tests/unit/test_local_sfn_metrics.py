"""The local platform's Step Functions execution metrics: published when an execution ends
while a platform runs, and not at all once it stopped (an execution that outlives its
platform, or one run by a plain ``mock_aws`` test, must not call into the next platform)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

from tuneloop.local.sfn_metrics import NAMESPACE, patch_execution_metrics


class Recorder:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def put_metric_data(self, **request: Any) -> None:
        self.published.append(request)


def _ended(status: str) -> Any:
    execution = SimpleNamespace(
        exec_status=SimpleNamespace(value=status), state_machine_arn="arn:sm", name="run-1"
    )
    return SimpleNamespace(execution=execution)


@pytest.mark.parametrize(("running", "expected"), [(True, 1), (False, 0)])
def test_an_ended_execution_publishes_only_while_a_platform_runs(
    monkeypatch: pytest.MonkeyPatch, running: bool, expected: int
) -> None:
    ended: list[Any] = []
    # moto's own end of an execution, restored after the test
    monkeypatch.setattr(BaseExecutionWorkerCommunication, "terminated", ended.append)
    cloudwatch = Recorder()
    patch_execution_metrics(lambda: cloudwatch, lambda: running)

    worker = _ended("SUCCEEDED")
    BaseExecutionWorkerCommunication.terminated(worker)

    assert ended == [worker], "moto's own end of the execution always runs"
    assert len(cloudwatch.published) == expected
    if expected:
        (request,) = cloudwatch.published
        assert request["Namespace"] == NAMESPACE
        assert request["MetricData"][0]["MetricName"] == "ExecutionsSucceeded"
