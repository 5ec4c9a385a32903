"""The SageMaker Model Registry group that the Register step adds versions to."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.naming import generated_name


class ModelRegistry(Construct):
    """``AWS::SageMaker::ModelPackageGroup``. CloudFormation requires its name, so it is
    generated from the construct path (``group_name``, the ``MODEL_PACKAGE_GROUP``)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, description: str, retain: bool
    ) -> None:
        super().__init__(scope, construct_id)
        self.group_name = generated_name(self)
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=self.group_name,
            model_package_group_description=description,
        )
        self.group.apply_removal_policy(RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY)
        stack = Stack.of(self)
        self.group_arn = self.group.attr_model_package_group_arn
        self.packages_arn = stack.format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{self.group_name}/*"
        )

    def grant_register(self, grantee: iam.IGrantable) -> None:
        """Create and read model package versions in this group."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:UpdateModelPackage",
                    "sagemaker:AddTags",
                ],
                resources=[self.group_arn, self.packages_arn],
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeModelPackageGroup", "sagemaker:ListModelPackages"],
                resources=[self.group_arn],
            )
        )
