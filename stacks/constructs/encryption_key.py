"""A customer-managed KMS key with rotation, for data at rest or for messaging."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


class EncryptionKey(Construct):
    """A rotating symmetric KMS key.

    ``service_publishers`` maps a service principal (e.g. ``cloudwatch.amazonaws.com`` for
    alarm actions on an encrypted SNS topic) to the ARN pattern of the resources it acts
    for: it may use the key for kms:GenerateDataKey*/kms:Decrypt, only on behalf of this
    account (``aws:SourceAccount``) and those resources (``aws:SourceArn``). Source:
    "Enable compatibility between event sources from AWS services and encrypted topics",
    https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        retain: bool,
        service_publishers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=description,
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        for service, source_arn in (service_publishers or {}).items():
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"Allow{service.split('.')[0].capitalize()}",
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],  # in a key policy "*" means this key
                    conditions={
                        "StringEquals": {"aws:SourceAccount": self.key.stack.account},
                        "ArnLike": {"aws:SourceArn": source_arn},
                    },
                )
            )
