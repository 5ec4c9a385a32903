"""DLC images: the committed data is the SageMaker SDK's, and synth gives the SDK's URIs."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from sagemaker.core import image_uris

from stacks import dlc_images
from stacks.config import ConfigError, DlcImage, load_stage_config
from stacks.dlc_images_from_sdk import DATA_FILE, generate, render
from stacks.regions import supported_regions
from tests.infra.conftest import Assembly

_URI = re.compile(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/[a-z0-9._/-]+:[\w.-]+")


def test_the_committed_data_is_what_the_installed_sdk_gives() -> None:
    # When the data is generated again from the SDK of the dev group
    fresh = render(generate())
    # Then it is byte for byte the committed file (else: make dlc-images)
    assert fresh == DATA_FILE.read_text()
    assert json.loads(fresh)["images"]["djl-inference"]["0.33.0-lmi15.0.0-cu128"]


def _resolve(node: Any, template: dict[str, Any], region: str) -> Any:
    """The value of ``node`` deployed in ``region`` (Refs to resources stay placeholders)."""
    if isinstance(node, list):
        return [_resolve(item, template, region) for item in node]
    if not isinstance(node, dict):
        return node
    if "Fn::Join" in node:
        separator, parts = node["Fn::Join"]
        return separator.join(str(_resolve(p, template, region)) for p in parts)
    if "Fn::FindInMap" in node:
        name, key, attribute = (_resolve(p, template, region) for p in node["Fn::FindInMap"])
        return template["Mappings"][name][key][attribute]
    if node.keys() == {"Ref"}:
        pseudo = {
            "AWS::Region": region,
            "AWS::URLSuffix": "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com",
            "AWS::Partition": "aws-cn" if region.startswith("cn-") else "aws",
        }
        return pseudo.get(node["Ref"], f"<{node['Ref']}>")
    return {key: _resolve(value, template, region) for key, value in node.items()}


def test_every_supported_region_synthesizes_the_uri_the_sdk_gives(dev: Assembly) -> None:
    config = load_stage_config("dev")
    pipeline = dev.template("Pipeline")
    for region in supported_regions(config.dlc_images):
        # Given the Pipeline template as CloudFormation resolves it in the region
        resolved = json.dumps(_resolve(pipeline["Resources"], pipeline, region))
        # Then its image URIs are exactly the SDK's for the stage's images
        expected = {
            image_uris.retrieve(
                "huggingface",
                region,
                version="5.3.0",
                base_framework_version="pytorch2.9.0",
                py_version="py312",
                instance_type=config.training_instance_type,
                image_scope="training",
            ),
            image_uris.retrieve(
                "huggingface",
                region,
                version="5.5.3",
                base_framework_version="pytorch2.6.0",
                py_version="py312",
                instance_type=config.serving_instance_type,
                image_scope="inference",
            ),
        }
        assert set(_URI.findall(resolved)) == expected, region


def test_ap_northeast_3_uses_the_osaka_registry_the_sdk_lists() -> None:
    # The hand-written map had the default account there; the SDK (and AWS's list) another
    image = load_stage_config("dev").serving_image
    assert dlc_images.registries(image.repository, image.tag)["ap-northeast-3"] == "364406365360"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            DlcImage(
                repository="huggingface-pytorch-inference",
                tag="2.6.0-transformers5.5.4-gpu-py312-cu124-ubuntu22.04",
            ),
            "serving_image.tag must be a tag of huggingface-pytorch-inference the SageMaker "
            "SDK's image data (sagemaker-core==2.27.0) lists, got "
            "'2.6.0-transformers5.5.4-gpu-py312-cu124-ubuntu22.04' (did you mean "
            "'2.6.0-transformers5.5.3-gpu-py312-cu124-ubuntu22.04'?); it lists ",
        ),
        (
            DlcImage(repository="huggingface-pytorch-inferense", tag="1.0"),
            "serving_image.repository must be a repository the SageMaker SDK's image data "
            "(sagemaker-core==2.27.0) lists, got 'huggingface-pytorch-inferense' (did you "
            "mean 'huggingface-pytorch-inference'?); it lists djl-inference, ",
        ),
    ],
)
def test_an_image_the_sdk_does_not_list_fails_naming_it_and_what_is_listed(
    image: DlcImage, message: str
) -> None:
    # When a stage names an image version the SDK's data does not have
    with pytest.raises(ConfigError) as raised:
        dataclasses.replace(load_stage_config("dev"), serving_image=image)
    # Then the stage config fails (so synth does) naming it and what the data lists
    assert str(raised.value).startswith("stage 'dev': ")
    assert message in str(raised.value)
