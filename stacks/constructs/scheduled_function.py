"""What the scheduled watch functions (continuous evaluation, drift check) share: the
EventBridge Scheduler schedule that invokes them, with its own role, and their
``cloudwatch:PutMetricData`` grant narrowed to one namespace."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from stacks.nag import WildcardAllowances


def grant_namespace_metrics(
    function: iam.IGrantable, allowances: WildcardAllowances, namespace: str
) -> None:
    """``cloudwatch:PutMetricData`` to ``namespace`` only (the action has no resource type,
    so the namespace condition is the narrowing)."""
    function.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
        )
    )
    allowances.allow_resource(
        "*",
        "cloudwatch:PutMetricData supports no resource-level permissions; the statement is "
        f"limited to the {namespace} namespace by the cloudwatch:namespace condition.",
    )


def invoke_on_schedule(
    scope: Construct,
    function: lambda_.IFunction,
    *,
    expression: str,
    enabled: bool,
    trigger: str,
    retry_attempts: int,
    description: str,
    role_description: str,
) -> scheduler.Schedule:
    """A schedule (``Schedule`` in ``scope``, with its role ``ScheduleRole``) invoking
    ``function`` with ``{"trigger": trigger, "scheduled_time": <the schedule's time>}``,
    what the matching CLI command sends by hand."""
    role = iam.Role(
        scope,
        "ScheduleRole",
        assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
        description=role_description,
    )
    WildcardAllowances(role).allow_resource(
        f"{function.function_arn}:*",
        "CDK's invoke grant also names the function's versions and aliases (<arn>:*) of "
        "this one function.",
    )
    return scheduler.Schedule(
        scope,
        "Schedule",
        schedule=scheduler.ScheduleExpression.expression(expression),
        description=description,
        enabled=enabled,
        target=targets.LambdaInvoke(
            function,
            input=scheduler.ScheduleTargetInput.from_object(
                {"trigger": trigger, "scheduled_time": scheduler.ContextAttribute.scheduled_time}
            ),
            retry_attempts=retry_attempts,
            # A missed invocation is worth retrying within the hour, not after the next one.
            max_event_age=Duration.hours(1),
            role=role,
        ),
    )
