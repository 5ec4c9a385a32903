"""What every role SageMaker runs as needs, whatever it runs: its logs and metrics under
``/aws/sagemaker/``, and an ``s3://`` base model. One statement set, shared by the jobs'
role and the endpoint of model lines' role, so the two cannot drift apart."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam

from stacks.nag import WildcardAllowances


def grant_sagemaker_logs_and_metrics(role: iam.Role, allowances: WildcardAllowances) -> None:
    """The log groups SageMaker names under ``/aws/sagemaker/`` and its metric namespaces."""
    logs = Stack.of(role).format_arn(
        service="logs",
        resource="log-group",
        resource_name="/aws/sagemaker/*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=[logs],
        )
    )
    allowances.allow_resource(
        logs,
        "SageMaker writes job and endpoint logs to log groups it names under /aws/sagemaker/.",
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        )
    )
    allowances.allow_resource(
        "*",
        "ecr:GetAuthorizationToken and cloudwatch:PutMetricData "
        "support no resource-level permissions (metrics are limited to "
        "the /aws/sagemaker/ namespaces by condition).",
    )


def grant_base_model_read(role: iam.Role, allowances: WildcardAllowances, uri: str) -> None:
    """Read an ``s3://`` base model (an archive, or every object under a prefix): the only
    objects outside the data lake that the jobs and an LMI endpoint read."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    bucket_arn = f"arn:{Stack.of(role).partition}:s3:::{bucket}"
    if key.endswith((".tar.gz", ".tgz")):
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{bucket_arn}/{key}"])
        )
        return
    prefix = f"{key.rstrip('/')}/" if key else ""
    objects = f"{bucket_arn}/{prefix}*"
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[objects]))
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        )
    )
    allowances.allow_resource(
        objects, "The stage's s3:// base model: every object under its prefix."
    )
