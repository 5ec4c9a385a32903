"""The regions the stacks can deploy to, checked at synth.

The templates are region-agnostic, but what they name exists only in some regions: each
Deep Learning Container image the stage pulls (the regions the SageMaker SDK's image data
lists for it, :mod:`stacks.dlc_images`) and the two AWS-managed Lambda layers at their
pinned versions (Powertools on every function, AWS SDK for pandas on
Ingest). A region missing any of them would fail only at deploy time, half-way through a
stack; ``app.py`` checks the region the CLI deploys to (``CDK_DEFAULT_REGION``) against
this module first, so synth fails instead, naming the region and the supported ones.
"""

from __future__ import annotations

from collections.abc import Mapping

from stacks import dlc_images
from stacks.config import ConfigError, DlcImage
from stacks.constructs.python_function import POWERTOOLS_LAYER_ACCOUNT, POWERTOOLS_LAYER_NAME
from stacks.ingestion import (
    AWS_SDK_PANDAS_LAYER_ACCOUNT,
    AWS_SDK_PANDAS_LAYER_NAME,
    AWS_SDK_PANDAS_LAYER_VERSION,
)

POWERTOOLS_LAYER_REGIONS = frozenset(
    {
        "af-south-1",
        "ap-east-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "il-central-1",
        "me-central-1",
        "me-south-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
    }
)
"""Where account 017000801446 publishes the Powertools v3 layers. One release pipeline
publishes each release to all of them, so a version number is the same release in each
(powertools-lambda-python, ``.github/workflows/reusable_deploy_v3_layer_stack.yml`` and the
"Lambda Layer" ARN table of its docs). GovCloud and China use other accounts."""

_PANDAS_DEFAULT_ACCOUNT = "336392948345"
AWS_SDK_PANDAS_LAYERS: dict[str, tuple[str, int]] = {
    **{
        region: (_PANDAS_DEFAULT_ACCOUNT, 16)
        for region in (
            "af-south-1",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-south-1",
            "ap-southeast-1",
            "ap-southeast-2",
            "ca-central-1",
            "eu-central-1",
            "eu-north-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "sa-east-1",
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
        )
    },
    "ap-east-1": ("839552336658", 16),
    "ap-south-2": ("246107603503", 16),
    "ap-southeast-3": ("258944054355", 16),
    "ap-southeast-4": ("945386623051", 16),
    "eu-central-2": ("956415814219", 16),
    "eu-south-1": ("774444163449", 16),
    "eu-south-2": ("982086096842", 16),
    "il-central-1": ("263840725265", 16),
    "me-central-1": ("593833071574", 16),
    "me-south-1": ("938046470361", 16),
    "cn-north-1": ("406640652441", 1),
    "cn-northwest-1": ("406640652441", 1),
}
"""(publishing account, layer version) of ``AWSSDKPandas-Python312`` (x86_64) of AWS SDK for
pandas 3.11.0, per region (aws-sdk-pandas ``docs/source/layers.rst`` of that release). The
Ingest function's ARN names one account and one version, so only the regions where both
match have the layer it asks for."""


def region_problems(region: str, images: Mapping[str, DlcImage]) -> list[str]:
    """What ``region`` lacks of what the stacks name (``images``: the stage's DLC images by
    setting name, :attr:`StageConfig.dlc_images`); empty when it has everything."""
    found: list[str] = []
    for name, image in images.items():
        if region not in dlc_images.registries(image.repository, image.tag):
            found.append(
                f"the SageMaker SDK's image data ({dlc_images.source()}) lists no {name} "
                f"{image.repository}:{image.tag} there"
            )
    if region not in POWERTOOLS_LAYER_REGIONS:
        found.append(
            f"account {POWERTOOLS_LAYER_ACCOUNT} publishes no {POWERTOOLS_LAYER_NAME} layer there"
        )
    pinned = (AWS_SDK_PANDAS_LAYER_ACCOUNT, AWS_SDK_PANDAS_LAYER_VERSION)
    published = AWS_SDK_PANDAS_LAYERS.get(region)
    layer = f"{AWS_SDK_PANDAS_LAYER_NAME}:{AWS_SDK_PANDAS_LAYER_VERSION}"
    if published is None:
        found.append(f"the AWS SDK for pandas layer {layer} is not known there")
    elif published != pinned:
        account, version = published
        found.append(
            f"the pinned AWS SDK for pandas layer {layer} of account {pinned[0]} is not "
            f"there (that release is {AWS_SDK_PANDAS_LAYER_NAME}:{version} of account {account})"
        )
    return found


def supported_regions(images: Mapping[str, DlcImage]) -> tuple[str, ...]:
    """Every region that has all of ``images`` and both layers at their pinned versions."""
    known = POWERTOOLS_LAYER_REGIONS | set(AWS_SDK_PANDAS_LAYERS)
    for image in images.values():
        known |= set(dlc_images.registries(image.repository, image.tag))
    return tuple(sorted(region for region in known if not region_problems(region, images)))


def check_region(region: str, images: Mapping[str, DlcImage]) -> None:
    """Raise :class:`ConfigError` naming ``region``, what it lacks and the supported ones."""
    problems = region_problems(region, images)
    if problems:
        raise ConfigError(
            f"region {region!r} is not supported: {'; '.join(problems)}. "
            f"Supported regions: {', '.join(supported_regions(images))}"
        )
