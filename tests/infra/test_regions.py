"""Regions: a region is supported only when it has every image and layer the stacks name."""

from __future__ import annotations

import dataclasses

import pytest

from stacks import dlc_images
from stacks.config import ConfigError, load_stage_config
from stacks.constructs.python_function import POWERTOOLS_LAYER_ACCOUNT
from stacks.ingestion import AWS_SDK_PANDAS_LAYER_ACCOUNT, AWS_SDK_PANDAS_LAYER_VERSION
from stacks.regions import (
    AWS_SDK_PANDAS_LAYERS,
    POWERTOOLS_LAYER_REGIONS,
    check_region,
    region_problems,
    supported_regions,
)

DEV_IMAGES = load_stage_config("dev").dlc_images


def test_every_supported_region_has_every_entry_it_needs() -> None:
    supported = supported_regions(DEV_IMAGES)
    assert {"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1"} <= set(
        supported
    )
    for region in supported:
        for image in DEV_IMAGES.values():
            assert region in dlc_images.registries(image.repository, image.tag)
        assert region in POWERTOOLS_LAYER_REGIONS
        assert AWS_SDK_PANDAS_LAYERS[region] == (
            AWS_SDK_PANDAS_LAYER_ACCOUNT,
            AWS_SDK_PANDAS_LAYER_VERSION,
        )
        check_region(region, DEV_IMAGES)  # does not raise


@pytest.mark.parametrize(
    ("region", "lacks"),
    [
        # The pandas layer there comes from another account than the ARN names.
        ("ap-east-1", "AWSSDKPandas-Python312:16 of account 336392948345 is not there"),
        # Powertools publishes no layer under its account in China; pandas' differs too.
        ("cn-north-1", f"account {POWERTOOLS_LAYER_ACCOUNT} publishes no"),
        # The SDK lists the 5.3.0 training image in no Hyderabad registry.
        (
            "ap-south-2",
            "lists no training_image huggingface-pytorch-training:2.9.0-transformers5.3.0",
        ),
        # Known to none of the tables.
        ("xx-moon-1", "lists no serving_image huggingface-pytorch-inference:"),
    ],
)
def test_a_region_missing_an_entry_fails_naming_it_and_the_supported_ones(
    region: str, lacks: str
) -> None:
    assert region not in supported_regions(DEV_IMAGES)
    with pytest.raises(ConfigError) as raised:
        check_region(region, DEV_IMAGES)
    message = str(raised.value)
    assert message.startswith(f"region {region!r} is not supported: ")
    assert lacks in message
    assert f"Supported regions: {', '.join(supported_regions(DEV_IMAGES))}" in message


def test_the_lmi_image_counts_only_with_the_lmi_backend() -> None:
    # Given the dev stage switched to the LMI backend
    lmi = dataclasses.replace(load_stage_config("dev"), serving_backend="lmi").dlc_images
    # Then its image is checked too, and without it it is not
    assert set(lmi) == {"training_image", "serving_image", "lmi.image"}
    assert set(DEV_IMAGES) == {"training_image", "serving_image"}


def test_a_bumped_layer_version_without_its_regions_supports_no_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the pandas layer pin raised without updating the region table
    monkeypatch.setattr("stacks.regions.AWS_SDK_PANDAS_LAYER_VERSION", 17)
    # Then no region has it: synth fails everywhere until the table says where it exists
    assert supported_regions(DEV_IMAGES) == ()
    assert "AWSSDKPandas-Python312:17" in " ".join(region_problems("us-east-1", DEV_IMAGES))
