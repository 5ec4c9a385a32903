"""The URI of an AWS Deep Learning Container image in the deploying region.

AWS publishes the DLCs from a registry account that depends on the region (see
https://github.com/aws/deep-learning-containers/blob/master/available_images.md). A
CloudFormation mapping picks it with ``AWS::Region``, so the template stays
region-agnostic and holds no account of ours.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Aws, CfnMapping, Fn, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.config import DlcImage

_DEFAULT_ACCOUNT = "763104351884"
_REGIONS_ON_DEFAULT_ACCOUNT = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "sa-east-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
)
DLC_REGISTRY_ACCOUNTS: dict[str, str] = {
    **dict.fromkeys(_REGIONS_ON_DEFAULT_ACCOUNT, _DEFAULT_ACCOUNT),
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ca-west-1": "204538143572",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
}
_MAPPING_ID = "DlcRegistryAccounts"


class DlcImageUri(Construct):
    """``uri``: ``<dlc account>.dkr.ecr.<region>.<url suffix>/<repository>:<tag>``."""

    def __init__(self, scope: Construct, construct_id: str, *, image: DlcImage) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        mapping = cast(CfnMapping | None, stack.node.try_find_child(_MAPPING_ID))
        if mapping is None:
            mapping = CfnMapping(
                stack,
                _MAPPING_ID,
                mapping={
                    region: {"account": acct}
                    for region, acct in sorted(DLC_REGISTRY_ACCOUNTS.items())
                },
            )
        self.account = mapping.find_in_map(Aws.REGION, "account")
        self.repository_arn = Fn.join(
            "",
            [
                "arn:",
                Aws.PARTITION,
                ":ecr:",
                Aws.REGION,
                ":",
                self.account,
                ":repository/",
                image.repository,
            ],
        )
        self.uri = Fn.join(
            "",
            [
                self.account,
                ".dkr.ecr.",
                Aws.REGION,
                ".",
                Aws.URL_SUFFIX,
                "/",
                image.repository,
                ":",
                image.tag,
            ],
        )

    def grant_pull(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` (e.g. the SageMaker execution role) pull this image."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                resources=[self.repository_arn],
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
