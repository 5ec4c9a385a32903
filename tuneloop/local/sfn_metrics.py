"""Step Functions' execution metrics (``AWS/States``) on the local platform.

Gap: moto's Step Functions interpreter runs executions but publishes no metrics. AWS
publishes one datum of ``ExecutionsSucceeded`` / ``ExecutionsFailed`` / ``ExecutionsAborted``
/ ``ExecutionsTimedOut`` (dimension ``StateMachineArn``) when an execution ends; the
pipeline-failure alarm watches ``ExecutionsFailed``. Publishing is the service's own work
(internal credentials).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

NAMESPACE = "AWS/States"
METRIC_OF_STATUS = {
    "SUCCEEDED": "ExecutionsSucceeded",
    "FAILED": "ExecutionsFailed",
    "ABORTED": "ExecutionsAborted",
    "TIMED_OUT": "ExecutionsTimedOut",
}


def execution_datum(state_machine_arn: str, status: str) -> dict[str, Any] | None:
    """The metric datum AWS publishes when an execution ends in ``status``."""
    metric = METRIC_OF_STATUS.get(status)
    if metric is None:
        return None
    return {
        "MetricName": metric,
        "Dimensions": [{"Name": "StateMachineArn", "Value": state_machine_arn}],
        "Timestamp": datetime.datetime.now(datetime.UTC),
        "Value": 1.0,
        "Unit": "Count",
    }


def patch_execution_metrics(cloudwatch: Callable[[], Any], active: Callable[[], bool]) -> None:
    """Publish the metric whenever moto's interpreter ends an execution while a local
    platform runs (``active``): other users of moto in the process (tests with
    ``mock_aws``) see moto's own behaviour, and an execution that ends after its platform
    stopped publishes nothing into the next one."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self: Any) -> None:
        original(self)
        if not active():
            return
        execution = self.execution
        status = getattr(execution.exec_status, "value", str(execution.exec_status))
        datum = execution_datum(str(execution.state_machine_arn), str(status))
        if datum is None:
            return
        try:
            cloudwatch().put_metric_data(Namespace=NAMESPACE, MetricData=[datum])
        except Exception as exc:  # a metric lost must not break the execution's end
            print(f"[local] {NAMESPACE} metric for {execution.name} lost: {exc}", flush=True)

    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]
