"""The SageMaker service integration for moto's Step Functions interpreter.

Gap: moto's interpreter (a port of LocalStack's) lists ``sagemaker`` as unsupported and
only allows ``.waitForTaskToken``. This class adds request-response and ``.sync`` for the
SageMaker calls the retrain state machine makes, in the shape of its AWS Batch
integration: the call is relayed to the emulator's SageMaker API and ``.sync`` polls
``Describe*`` until the job reaches a terminal status, failing the state with
``States.TaskFailed`` as AWS does.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, Final

import botocore.session
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import (
    StateCredentials,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
    ResourceRuntimePart,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils import boto_client
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

_SUPPORTED_PATTERNS: Final[set[Any]] = {
    ResourceCondition.WaitForTaskToken,
    ResourceCondition.Sync,
}

# createXJob.sync → (describe call, name parameter, status field)
_SYNC_DESCRIBE: Final[dict[str, tuple[str, str, str]]] = {
    "create_training_job": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
    "create_processing_job": (
        "describe_processing_job",
        "ProcessingJobName",
        "ProcessingJobStatus",
    ),
}
_TERMINAL: Final[set[str]] = {"Completed", "Failed", "Stopped"}


def _json_safe(value: Any) -> Any:
    """Timestamps as epoch milliseconds, as Step Functions returns them."""
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _input_members(action: str) -> set[str] | None:
    """Every request parameter of a SageMaker operation, from botocore's service model."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    for operation in model.operation_names:
        if operation.lower() == action.lower():
            shape = model.operation_model(operation).input_shape
            return set(shape.members) if shape is not None else set()
    return None


class StateTaskServiceSageMaker(StateTaskServiceCallback):
    def __init__(self) -> None:
        super().__init__(supported_integration_patterns=_SUPPORTED_PATTERNS)

    def _get_supported_parameters(self) -> set[str] | None:
        return _input_members(self.resource.api_action)

    def _eval_service_task(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict,
        state_credentials: StateCredentials,
    ) -> None:
        # Through the module: the local platform gives the client the state's role.
        client = boto_client.boto_client_for(
            region=resource_runtime_part.region,
            service="sagemaker",
            state_credentials=state_credentials,
        )
        action = self._get_boto_service_action()
        response = getattr(client, action)(**normalised_parameters)
        response.pop("ResponseMetadata", None)
        if self.resource.condition == ResourceCondition.Sync:
            # Keep what the sync resolver needs to find the job.
            response["__job_name"] = normalised_parameters.get(_SYNC_DESCRIBE[action][1])
        env.stack.append(_json_safe(response))

    def _build_sync_resolver(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict,
        state_credentials: StateCredentials,
    ) -> Callable[[], Any] | None:
        client = boto_client.boto_client_for(
            region=resource_runtime_part.region,
            service="sagemaker",
            state_credentials=state_credentials,
        )
        describe, name_param, status_field = _SYNC_DESCRIBE[self._get_boto_service_action()]
        job_name = env.stack.pop()["__job_name"]

        def _sync_resolver() -> dict | None:
            response = getattr(client, describe)(**{name_param: job_name})
            response.pop("ResponseMetadata", None)
            status = response.get(status_field)
            if status not in _TERMINAL:
                return None
            description = _json_safe(response)
            if status == "Completed":
                return description
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(  # type: ignore[typeddict-item]
                        taskFailedEventDetails=TaskFailedEventDetails(
                            resource=self._get_sfn_resource(),
                            resourceType=self._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(description),
                        )
                    ),
                )
            )

        return _sync_resolver
