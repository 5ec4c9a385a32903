"""The release state machine: a person's deploy, or rollback to a chosen version.

Input: ``{"model_version", "model_package_arn", "manual": true, "rollback": bool,
"actor": {"name", "kind", "source"}, "request_id"}`` (``tuneloop.operations.actions``), and
``"model_line": "<name>"`` to release a version of that model line (its adapter component;
absent or ``""``: the endpoint's one model).

HasModelLine ─ (absent: NoModelLine sets "") ─▶ Deploy ─▶ ...
Deploy → WaitForEndpoint → CheckEndpoint → EndpointReady ─┬─ ConfirmDeployment → Released
                                                          └─ EndpointFailed ─▶ NotifyFailure
every task: Catch States.ALL into $.error ─▶ NotifyFailure → Failed

The same fragment as the retrain run (stacks/constructs/endpoint_deployment.py), so a manual
deployment goes through the same Deploy path, blue/green update and rollback alarms. It is
never held by a freeze (``manual``); ConfirmDeployment records the audit trail with the
person as the actor. A failure is published to the notification topic and ends the
execution as failed with the step's error and cause (the version keeps its status and can
be deployed again).
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.endpoint_deployment import EndpointDeployment
from stacks.constructs.state_machine import logged_state_machine
from stacks.grants import KMS_ACTIONS
from stacks.nag import WildcardAllowances

_P = sfn.JsonPath
RELEASE_TIMEOUT_HOURS = 2


class ReleaseStateMachine(Construct):
    """The state machine, its log group and its role's permissions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        deploy: lambda_.IFunction,
        confirm: lambda_.IFunction,
        notify_topic: sns.ITopic,
        endpoint_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        notify_failure = tasks.SnsPublish(
            self,
            "NotifyFailure",
            topic=notify_topic,
            subject="TuneLoop: release failed",
            message=sfn.TaskInput.from_object(
                {
                    "event": "release_failed",
                    "model_version": _P.string_at("$.model_version"),
                    "error": _P.object_at("$.error"),
                    "execution_arn": _P.string_at("$$.Execution.Id"),
                }
            ),
            result_path=_P.DISCARD,
        )
        failed = sfn.Fail(self, "Failed", error_path="$.error.Error", cause_path="$.error.Cause")
        notify_failure.add_catch(failed, errors=[sfn.Errors.ALL], result_path="$.notify_error")
        notify_failure.next(failed)
        released = sfn.Succeed(self, "Released")
        fragment = EndpointDeployment(
            self,
            deploy=deploy,
            confirm=confirm,
            deploy_payload={
                "model_version": _P.string_at("$.model_version"),
                "model_package_arn": _P.string_at("$.model_package_arn"),
                "manual": True,
                "model_line": _P.string_at("$.model_line"),
            },
            confirm_payload={
                "model_version": _P.string_at("$.model_version"),
                "deployment": _P.object_at("$.deployment"),
                "manual": True,
                "rollback": _P.string_at("$.rollback"),
                "actor": _P.object_at("$.actor"),
                "request_id": _P.string_at("$.request_id"),
                "model_line": _P.string_at("$.model_line"),
            },
            endpoint_arn=endpoint_arn,
            poll_seconds=config.endpoint_poll_seconds,
            on_success=released,
            on_failure=notify_failure,
            hold_when_frozen=False,
        )
        # An input without "model_line" releases the endpoint's model: the payloads read
        # $.model_line, which must exist.
        line_default = (
            sfn.Choice(self, "HasModelLine")
            .when(sfn.Condition.is_present("$.model_line"), fragment.start)
            .otherwise(
                sfn.Pass(
                    self,
                    "NoModelLine",
                    result=sfn.Result.from_string(""),
                    result_path="$.model_line",
                ).next(fragment.start)
            )
        )
        self.state_machine, self.log_group = logged_state_machine(
            self,
            definition=line_default,
            comment="TuneLoop release: deploy or roll back to a chosen version, by a person",
            timeout=Duration.hours(RELEASE_TIMEOUT_HOURS),
            config=config,
        )
        notify_topic.grant_publish(self.state_machine)
        allow = WildcardAllowances(cast(iam.Role, self.state_machine.role))
        for function in (deploy, confirm):
            allow.allow_resource(
                f"{function.function_arn}:*",
                "CDK's LambdaInvoke grant covers the function's versions and aliases too.",
            )
        allow.allow_resource(
            "*",
            "X-Ray and CloudWatch Logs delivery (logs:CreateLogDelivery, ...) for the state "
            "machine support no resource-level permissions.",
        )
        allow.allow_action("kms:GenerateDataKey*", KMS_ACTIONS["kms:GenerateDataKey*"])
