"""The role SageMaker training jobs, evaluation jobs and endpoints run as."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constructs.dlc_image import DlcImageUri
from stacks.constructs.training_code import TrainingCode
from stacks.grants import grant_objects
from stacks.nag import WildcardAllowances
from stacks.sagemaker_grants import grant_base_model_read, grant_sagemaker_logs_and_metrics


def sagemaker_source_arn(stack: Stack) -> str:
    """``arn:<partition>:sagemaker:<region>:<account>:*``: what SageMaker presents as
    ``aws:SourceArn`` for inference, and a pattern over its job ARNs."""
    return f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:*"


def sagemaker_service_role(scope: Construct, construct_id: str, description: str) -> iam.Role:
    """A role only SageMaker may assume, and only for this account's and region's resources.

    Confused deputy: the shape is AWS's ("Cross-service confused deputy prevention", sections
    Training Jobs, Processing Jobs and Inference,
    https://docs.aws.amazon.com/sagemaker/latest/dg/security-confused-deputy-prevention.html):
    for inference SageMaker presents exactly arn:<partition>:sagemaker:<region>:<account>:*
    (not the model's or endpoint's ARN), so a narrower pattern would break the endpoint; that
    one pattern also holds the training and processing job ARNs. The account is in the ARN,
    and the documented trust policies use aws:SourceArn only."""
    return iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal(
            "sagemaker.amazonaws.com",
            conditions={"ArnLike": {"aws:SourceArn": sagemaker_source_arn(Stack.of(scope))}},
        ),
        description=description,
    )


class SageMakerExecutionRole(Construct):
    """Reads training sets, code and images; writes job output to the artifacts bucket;
    writes its logs and metrics; reads the rollback alarms' state. Nothing else."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        curated: s3.IBucket,
        artifacts: s3.IBucket,
        training_code: TrainingCode,
        images: list[DlcImageUri],
        rollback_alarms: Sequence[cw.IAlarm],
        base_model: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = sagemaker_service_role(self, "Role", "TuneLoop SageMaker jobs and endpoint")
        self.allowances = WildcardAllowances(self.role)
        allow = self.allowances
        grant_objects(curated, self.role, allow, prefix="datasets/", access="read")
        grant_objects(artifacts, self.role, allow, prefix="jobs/", access="read_write")
        # Train's spot-resume checkpoints (CheckpointConfig), synced both ways by SageMaker.
        grant_objects(artifacts, self.role, allow, prefix="checkpoints/", access="read_write")
        grant_objects(artifacts, self.role, allow, prefix="benchmarks/", access="read")
        # Evaluate reads the benchmark versions PrepareDataset froze for the run.
        grant_objects(artifacts, self.role, allow, prefix="runs/", access="read")
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[
                    training_code.asset.bucket.arn_for_objects(training_code.asset.s3_object_key)
                ],
            )
        )
        for image in images:
            image.grant_pull(self.role)
        if base_model.startswith("s3://"):
            grant_base_model_read(self.role, allow, base_model)
        grant_sagemaker_logs_and_metrics(self.role, allow)
        # Blue/green deployment guardrails watch the auto-rollback alarms as this role
        # ("Auto-Rollback Configuration and Monitoring",
        # https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms"],
                resources=[alarm.alarm_arn for alarm in rollback_alarms],
            )
        )
