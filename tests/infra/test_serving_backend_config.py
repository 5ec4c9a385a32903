"""The serving backend in the stage config: validated, and its LMI options reach the Lambda."""

from __future__ import annotations

import dataclasses
import json

import pytest

from stacks.config import ConfigError, LmiOptions, load_stage_config
from tests.infra.conftest import synthesize
from tuneloop.release.lmi import LmiSettings


def test_the_default_backend_is_our_server() -> None:
    assert {load_stage_config(s, {}).serving_backend for s in ("dev", "prod", "local")} == {
        "tuneloop"
    }


def test_a_bad_backend_name_is_rejected_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"stage 'dev': .*serving_backend must be one of"):
        dataclasses.replace(load_stage_config("dev", {}), serving_backend="tgi")


def test_lmi_needs_a_base_model_it_can_load() -> None:
    with pytest.raises(ConfigError, match="'lmi' needs an hf:// or s3:// base_model"):
        dataclasses.replace(load_stage_config("local", {}), serving_backend="lmi")


def test_lmi_rank_must_hold_the_trained_adapters() -> None:
    dev = load_stage_config("dev", {})
    small = dataclasses.replace(dev.lmi, max_lora_rank=8)
    with pytest.raises(ConfigError, match=r"lmi.max_lora_rank must be >= training.lora_r \(16\)"):
        dataclasses.replace(dev, serving_backend="lmi", lmi=small)
    with pytest.raises(ConfigError, match=r"lmi.max_lora_rank must be one of"):
        dataclasses.replace(dev, lmi=dataclasses.replace(dev.lmi, max_lora_rank=17))
    with pytest.raises(ConfigError, match=r"lmi.image.tag must be an image tag"):
        image = dataclasses.replace(dev.lmi.image, tag="bad tag")
        dataclasses.replace(dev, lmi=dataclasses.replace(dev.lmi, image=image))


def test_lmi_options_are_what_the_deploy_lambda_reads() -> None:
    dev = load_stage_config("dev", {})
    options = LmiOptions(image=dev.lmi.image, adapter_name="support", max_lora_rank=32)
    config = dataclasses.replace(dev, serving_backend="lmi", lmi=options)
    assert LmiSettings.from_json(config.lmi.to_json()) == LmiSettings(
        adapter_name="support", max_loras=1, max_lora_rank=32, max_model_len=4096, dtype="bf16"
    )


def test_context_selects_the_backend() -> None:
    assert load_stage_config("dev", {"serving_backend": "lmi"}).serving_backend == "lmi"
    with pytest.raises(ConfigError, match="serving_backend must be one of"):
        load_stage_config("dev", {"serving_backend": "vllm"})


def test_an_lmi_stage_synthesizes_with_the_lmi_image_and_its_grants(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Synth runs cdk-nag as a validation plugin: an unacknowledged finding fails right here.
    assembly = synthesize("dev", tmp_path_factory.mktemp("cdk-lmi"), serving_backend="lmi")
    functions = assembly.resources("AWS::Lambda::Function")
    by_handler = {
        fn["Properties"]["Handler"]: fn["Properties"]["Environment"]["Variables"]
        for fn in functions.values()
        if fn["Properties"]["Environment"]["Variables"].get("SERVING_BACKEND")
    }
    # Register builds the LMI container once, into the package Deploy serves: only
    # Register knows the backend and image
    assert sorted(by_handler) == ["lambdas.register.handler.handler"]
    for variables in by_handler.values():
        assert variables["SERVING_BACKEND"] == "lmi"
        assert "djl-inference" in json.dumps(variables["SERVING_IMAGE_URI"])
        assert json.loads(variables["LMI_OPTIONS"])["max_lora_rank"] >= 16
    policies = json.dumps(assembly.resources("AWS::IAM::Policy"))
    assert "models/*" in policies
