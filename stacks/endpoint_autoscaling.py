"""What the functions that manage the endpoint variant's autoscaling may do, with the
cdk-nag acknowledgments it needs (docs/serving.md, "Autoscaling").

The endpoint exists only at run time, so its scalable target is registered at run time too
(``tuneloop.release.autoscaling``): Deploy suspends it, ConfirmDeployment registers or
restores it, Rollback suspends and restores it. Actions, resource types and condition keys
are those of the Service Authorization Reference ("Actions, resources, and condition keys for
AWS Application Auto Scaling",
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsapplicationautoscaling.html);
Application Auto Scaling also checks that the caller may use the scaled resource and the
alarms target tracking creates ("Permissions validation for Application Auto Scaling API
calls on target resources",
https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_permission_validation.html).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam

from stacks.nag import WildcardAllowances
from tuneloop.release.autoscaling import (
    SCALABLE_DIMENSION,
    SERVICE_LINKED_ROLE_SERVICE,
    SERVICE_NAMESPACE,
    resource_id,
)

# The role Application Auto Scaling creates for SageMaker endpoints on first registration
# ("Service-linked roles for Application Auto Scaling").
SERVICE_LINKED_ROLE = (
    f"aws-service-role/{SERVICE_LINKED_ROLE_SERVICE}/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


def grant_endpoint_autoscaling(
    grantee: iam.IGrantable,
    allowances: WildcardAllowances,
    *,
    endpoint_name: str,
    endpoint_arn: str,
    put_policy: bool,
    create_service_linked_role: bool,
) -> None:
    """Register (suspend, restore) the endpoint variant as a scalable target; with
    ``put_policy`` also put its target-tracking policy; with ``create_service_linked_role``
    the first registration may create Application Auto Scaling's role for SageMaker."""
    stack = Stack.of(grantee.grant_principal)  # type: ignore[arg-type]
    principal = grantee.grant_principal
    actions = ["application-autoscaling:RegisterScalableTarget"]
    if put_policy:
        actions.append("application-autoscaling:PutScalingPolicy")
    # A scalable target's ARN carries an ID Application Auto Scaling assigns at registration
    # (as its ABAC examples grant them, "ABAC with Application Auto Scaling"): any target of
    # the account and region, held to SageMaker variants' instance counts by the service's
    # own condition keys.
    any_target = stack.format_arn(
        service="application-autoscaling", resource="scalable-target", resource_name="*"
    )
    principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=actions,
            resources=[any_target],
            conditions={
                "StringEquals": {
                    "application-autoscaling:service-namespace": SERVICE_NAMESPACE,
                    "application-autoscaling:scalable-dimension": SCALABLE_DIMENSION,
                }
            },
        )
    )
    principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["application-autoscaling:DescribeScalableTargets"], resources=["*"]
        )
    )
    allowances.allow_resource(
        any_target,
        "A scalable target's ARN ends in an ID Application Auto Scaling assigns at "
        "registration; held to SageMaker variant instance counts by its condition keys.",
    )
    allowances.allow_resource(
        "*", "application-autoscaling:DescribeScalableTargets has no resource types."
    )
    # What Application Auto Scaling validates for the caller: the endpoint it scales ...
    any_config = stack.format_arn(
        service="sagemaker", resource="endpoint-config", resource_name="*"
    )
    principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"],
            resources=[endpoint_arn],
        )
    )
    principal.add_to_principal_policy(
        iam.PolicyStatement(actions=["sagemaker:DescribeEndpointConfig"], resources=[any_config])
    )
    allowances.allow_resource(
        any_config,
        "Application Auto Scaling reads the endpoint's current config, which Deploy names at "
        "run time.",
    )
    if put_policy:
        # ... and the alarms target tracking creates for this variant.
        alarms = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"TargetTracking-{resource_id(endpoint_name)}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "cloudwatch:DescribeAlarms",
                    "cloudwatch:PutMetricAlarm",
                    "cloudwatch:DeleteAlarms",
                ],
                resources=[alarms],
            )
        )
        allowances.allow_resource(
            alarms,
            "Target tracking names its alarms TargetTracking-<resource id>-AlarmHigh/Low-<id>; "
            "the ID is assigned when the policy is put.",
        )
    if create_service_linked_role:
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:CreateServiceLinkedRole"],
                resources=[
                    stack.format_arn(
                        service="iam",
                        region="",
                        resource="role",
                        resource_name=SERVICE_LINKED_ROLE,
                    )
                ],
                conditions={"StringEquals": {"iam:AWSServiceName": SERVICE_LINKED_ROLE_SERVICE}},
            )
        )
