"""The Deploy → wait for the endpoint → ConfirmDeployment fragment, shared by the retrain and
the release state machines (one definition of how a version reaches the endpoint).

Deploy ─▶ [DeploymentHeld? ─ held ─▶ HeldByFreeze] ─▶ WaitForEndpoint ─▶ CheckEndpoint ─▶
EndpointReady ─┬─ InService ─▶ ConfirmDeployment ─▶ <on_success>
               ├─ Failed/OutOfService/UpdateRollbackFailed ─▶ EndpointFailed ─▶ <on_failure>
               └─ (else) WaitForEndpoint

Every task catches ``States.ALL`` into ``$.error`` → ``on_failure``. A model line's endpoint
stays InService while the line's adapter component is created or updated, so
ConfirmDeployment raises ``EndpointBusyError`` until the component settles and is retried
every poll interval for up to :data:`COMPONENT_WAIT_SECONDS`. The freeze Choice is
built only where an automatic deployment can be held (the retrain run); a release run is
always a person's and never held.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

# DescribeEndpoint statuses that waiting cannot change (SageMaker API reference,
# DescribeEndpoint "EndpointStatus"): the run fails at once instead of polling until its
# timeout. Creating, Updating, SystemUpdating, RollingBack and Deleting are transitional.
ENDPOINT_FAILED_STATUSES = ("Failed", "OutOfService", "UpdateRollbackFailed")
HELD_STATE = "HeldByFreeze"
COMPONENT_WAIT_SECONDS = 3600
"""How long ConfirmDeployment waits for a line's component (an adapter loads in minutes;
a first one on a cold base may take longer)."""
_P = sfn.JsonPath


def lambda_task(
    scope: Construct,
    state_name: str,
    function: lambda_.IFunction,
    payload: Mapping[str, Any],
    *,
    result_path: str,
) -> tasks.LambdaInvoke:
    """A Lambda task whose result is the handler's return value (no ``Payload``
    wrapper); retries Lambda service errors."""
    return tasks.LambdaInvoke(
        scope,
        state_name,
        lambda_function=function,
        payload=sfn.TaskInput.from_object(dict(payload)),
        payload_response_only=True,
        retry_on_service_exceptions=True,
        result_path=result_path,
    )


class EndpointDeployment:
    """The fragment's states, built in ``scope`` (the state machine's construct).

    ``deploy_payload`` / ``confirm_payload``: what the two Lambdas receive (they differ
    between a retrain run, which reads ``$.dataset``/``$.registration``, and a release run,
    which reads its input). ``start`` is the first state; ``tasks`` the states that catch."""

    def __init__(
        self,
        scope: Construct,
        *,
        deploy: lambda_.IFunction,
        confirm: lambda_.IFunction,
        deploy_payload: Mapping[str, Any],
        confirm_payload: Mapping[str, Any],
        endpoint_arn: str,
        poll_seconds: int,
        on_success: sfn.IChainable,
        on_failure: sfn.IChainable,
        hold_when_frozen: bool,
    ) -> None:
        self.deploy = lambda_task(
            scope, "Deploy", deploy, deploy_payload, result_path="$.deployment"
        )
        wait = sfn.Wait(
            scope,
            "WaitForEndpoint",
            time=sfn.WaitTime.duration(Duration.seconds(poll_seconds)),
        )
        check = tasks.CallAwsService(
            scope,
            "CheckEndpoint",
            service="sagemaker",
            action="describeEndpoint",
            parameters={"EndpointName": _P.string_at("$.deployment.endpoint_name")},
            iam_resources=[endpoint_arn],
            result_selector={
                "status": _P.string_at("$.EndpointStatus"),
                "endpoint_config_name": _P.string_at("$.EndpointConfigName"),
            },
            result_path="$.endpoint",
        )
        check.add_retry(
            errors=["SageMaker.SageMakerException", "SageMaker.ThrottlingException"],
            interval=Duration.seconds(5),
            max_attempts=3,
            backoff_rate=2,
        )
        self.confirm = lambda_task(
            scope, "ConfirmDeployment", confirm, confirm_payload, result_path="$.confirmation"
        )
        self.confirm.add_retry(
            errors=["EndpointBusyError"],
            interval=Duration.seconds(poll_seconds),
            max_attempts=max(1, COMPONENT_WAIT_SECONDS // poll_seconds),
            backoff_rate=1,
        )
        endpoint_failed = sfn.Pass(
            scope,
            "EndpointFailed",
            comment="Shape a Catch-like error for an endpoint that cannot reach InService.",
            parameters={
                "Error": "EndpointNotInService",
                "Cause": _P.format(
                    "endpoint {} is {}; DescribeEndpoint names the FailureReason",
                    _P.string_at("$.deployment.endpoint_name"),
                    _P.string_at("$.endpoint.status"),
                ),
            },
            result_path="$.error",
        )
        self.tasks: list[sfn.TaskStateBase] = [self.deploy, check, self.confirm]
        for task in self.tasks:
            task.add_catch(on_failure, errors=[sfn.Errors.ALL], result_path="$.error")

        endpoint_ready = (
            sfn.Choice(scope, "EndpointReady")
            .when(
                sfn.Condition.string_equals("$.endpoint.status", "InService"),
                self.confirm.next(on_success),
            )
            .when(
                sfn.Condition.or_(
                    *(
                        sfn.Condition.string_equals("$.endpoint.status", status)
                        for status in ENDPOINT_FAILED_STATUSES
                    )
                ),
                endpoint_failed.next(on_failure),
            )
            .otherwise(wait)
        )
        polling = wait.next(check).next(endpoint_ready)
        if hold_when_frozen:
            held = sfn.Succeed(
                scope,
                HELD_STATE,
                comment="Deployment is frozen: the version stays registered; "
                "`tuneloop deploy VERSION` deploys it later.",
            )
            self.deploy.next(
                sfn.Choice(scope, "DeploymentHeld")
                .when(
                    sfn.Condition.and_(
                        sfn.Condition.is_present("$.deployment.held"),
                        sfn.Condition.boolean_equals("$.deployment.held", True),
                    ),
                    held,
                )
                .otherwise(polling)
            )
        else:
            self.deploy.next(polling)
        self.start: sfn.IChainable = self.deploy
