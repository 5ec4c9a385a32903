"""The URI of an AWS Deep Learning Container image in the deploying region.

AWS publishes the DLCs from a registry account that depends on the region and the image;
the SageMaker SDK's image data (:mod:`stacks.dlc_images`) gives it for every region where
the image exists. A CloudFormation mapping per image picks it with ``AWS::Region``, so the
template stays region-agnostic and holds no account of ours.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnMapping, Fn
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks import dlc_images
from stacks.config import DlcImage


class DlcImageUri(Construct):
    """``uri``: ``<dlc account>.dkr.ecr.<region>.<url suffix>/<repository>:<tag>``."""

    def __init__(self, scope: Construct, construct_id: str, *, image: DlcImage) -> None:
        super().__init__(scope, construct_id)
        accounts = dlc_images.registries(image.repository, image.tag)
        mapping = CfnMapping(
            self,
            "Registries",
            mapping={region: {"account": acct} for region, acct in sorted(accounts.items())},
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
