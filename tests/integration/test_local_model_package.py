"""The local endpoint serves a model made from a registered package (what Deploy creates)."""

from __future__ import annotations

from moto.sagemaker.models import sagemaker_backends

from tests.integration.aws_fixtures import ACCOUNT, REGION, Platform, aws_credentials, platform
from tuneloop import aws
from tuneloop.local.gaps import _model_data_url

__all__ = ["aws_credentials", "platform"]

MODEL_DATA = "s3://tuneloop-artifacts/jobs/v0002-train/output/model.tar.gz"


def test_a_model_from_a_package_serves_the_packages_artifact(platform: Platform) -> None:
    # Given a registered package and a model that only names it (as Deploy creates it)
    sagemaker = aws.sagemaker()
    package_arn = sagemaker.create_model_package(
        ModelPackageGroupName=platform.model_package_group,
        InferenceSpecification={
            "Containers": [{"Image": platform.serving_image_uri, "ModelDataUrl": MODEL_DATA}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus="Approved",
    )["ModelPackageArn"]
    sagemaker.create_model(
        ModelName="v0002-model",
        ExecutionRoleArn=platform.sagemaker_role_arn,
        PrimaryContainer={"ModelPackageName": package_arn},
    )
    model = sagemaker_backends[ACCOUNT][REGION].describe_model("v0002-model")
    # When the local endpoint looks up what to serve, then it is the package's artifact
    assert _model_data_url(model) == MODEL_DATA


def test_a_model_with_its_own_container_serves_that(platform: Platform) -> None:
    sagemaker = aws.sagemaker()
    sagemaker.create_model(
        ModelName="direct",
        ExecutionRoleArn=platform.sagemaker_role_arn,
        PrimaryContainer={"Image": platform.serving_image_uri, "ModelDataUrl": "s3://b/k.tar.gz"},
    )
    model = sagemaker_backends[ACCOUNT][REGION].describe_model("direct")
    assert _model_data_url(model) == "s3://b/k.tar.gz"
