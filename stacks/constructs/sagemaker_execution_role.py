"""The role SageMaker training jobs, evaluation jobs and endpoints run as."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constructs.dlc_image import DlcImageUri
from stacks.constructs.training_code import TrainingCode


class SageMakerExecutionRole(Construct):
    """Reads training sets, code and images; writes job output to the artifacts bucket;
    writes its logs and metrics. Nothing else."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        curated: s3.IBucket,
        artifacts: s3.IBucket,
        training_code: TrainingCode,
        images: list[DlcImageUri],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="TuneLoop SageMaker jobs and endpoint",
        )
        curated.grant_read(self.role)
        artifacts.grant_read_write(self.role)
        training_code.asset.grant_read(self.role)
        for image in images:
            image.grant_pull(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                         "logs:DescribeLogStreams"],
                resources=[stack.format_arn(service="logs", resource="log-group",
                                            resource_name="/aws/sagemaker/*",
                                            arn_format=ArnFormat.COLON_RESOURCE_NAME)],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            )
        )
