"""The LMI backend: Register repacks the adapter once (LMI image and environment,
adapters/<name>/ layout) into the model package; Deploy serves that package as it is."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pytest

from lambdas.deploy.handler import handler as deploy
from lambdas.register.handler import handler
from tests.integration.archives import archive_files
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    start_training,
    use_handler_env,
)
from tuneloop import aws
from tuneloop.release.lmi import LmiArtifactError, LmiSettings, prepare_lmi_model

__all__ = ["aws_credentials", "platform"]

LMI_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.33.0-lmi15.0.0-cu128"
VERSION = "v0003-20260101-000000"
MODEL_KEY = "jobs/v0003-train/output/model.tar.gz"
ADAPTER_WEIGHTS = b"\x00safetensors-bytes\x01" * 50
OPTIONS = {"adapter_name": "support", "max_loras": 2, "max_lora_rank": 32}


def adapter_artifact(base_model: str = "hf://HuggingFaceTB/SmolLM2-1.7B-Instruct") -> bytes:
    """What train.py writes to SM_MODEL_DIR: adapter + tokenizer + metadata + our code/."""
    meta = {"base_model": base_model, "adapter": True, "model_version": VERSION}
    return archive_files(
        {
            "./tuneloop_model.json": json.dumps(meta).encode(),
            "./adapter_config.json": b'{"r": 16, "lora_alpha": 32}',
            "./adapter_model.safetensors": ADAPTER_WEIGHTS,
            "./tokenizer.json": b"{}",
            "./code/inference.py": b"def model_fn(d): ...",
            "./code/tuneloop/__init__.py": b"",
        }
    )


def use_lmi_env(monkeypatch: pytest.MonkeyPatch, platform: Platform, function: str) -> None:
    """``function``'s environment with the LMI backend, as an LMI stage deploys it."""
    use_handler_env(monkeypatch, platform, function)
    monkeypatch.setenv("SERVING_BACKEND", "lmi")
    monkeypatch.setenv("SERVING_IMAGE_URI", LMI_IMAGE)
    monkeypatch.setenv("ARTIFACTS_BUCKET", platform.artifacts_bucket)
    monkeypatch.setenv("LMI_OPTIONS", json.dumps(OPTIONS))


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_lmi_env(monkeypatch, platform, "register")
    start_training(platform, VERSION)
    return platform


def upload(platform: Platform, body: bytes) -> str:
    aws.s3().put_object(Bucket=platform.artifacts_bucket, Key=MODEL_KEY, Body=body)
    return f"s3://{platform.artifacts_bucket}/{MODEL_KEY}"


def registered_container(result: dict[str, Any]) -> dict[str, Any]:
    """The one container of the package Register returned."""
    package = aws.sagemaker().describe_model_package(ModelPackageName=result["model_package_arn"])
    (container,) = package["InferenceSpecification"]["Containers"]
    return dict(container)


def read_tarball(platform: Platform, uri: str) -> dict[str, bytes]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return {
            m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile()
        }


def test_an_adapter_is_registered_on_lmi_with_vllm_lora_and_the_adapters_layout(
    env: Platform,
) -> None:
    model_data = upload(env, adapter_artifact())

    result = handler({"model_version": VERSION, "model_data": model_data}, lambda_context())

    container = registered_container(result)
    assert container["Image"] == LMI_IMAGE
    lmi_uri = f"s3://{env.artifacts_bucket}/models/{VERSION}/lmi/model.tar.gz"
    assert container["ModelDataUrl"] == lmi_uri
    environment = container["Environment"]
    assert environment["HF_MODEL_ID"] == "HuggingFaceTB/SmolLM2-1.7B-Instruct"
    assert environment["OPTION_ROLLING_BATCH"] == "vllm"
    assert environment["OPTION_ENABLE_LORA"] == "true"
    assert (environment["OPTION_MAX_LORAS"], environment["OPTION_MAX_LORA_RANK"]) == ("2", "32")
    assert "SAGEMAKER_PROGRAM" not in environment

    files = read_tarball(env, lmi_uri)
    assert set(files) == {
        "serving.properties",
        "adapters/support/tuneloop_model.json",
        "adapters/support/adapter_config.json",
        "adapters/support/adapter_model.safetensors",
        "adapters/support/tokenizer.json",
    }
    assert files["adapters/support/adapter_model.safetensors"] == ADAPTER_WEIGHTS
    properties = files["serving.properties"].decode().splitlines()
    assert "option.model_id=HuggingFaceTB/SmolLM2-1.7B-Instruct" in properties
    assert {"option.rolling_batch=vllm", "option.enable_lora=true"} <= set(properties)
    item = aws.table(env.model_versions_table).get_item(Key={"model_version": VERSION})["Item"]
    assert item["serving_backend"] == "lmi" and item["model_data_url"] == model_data


def test_a_retried_deploy_reuses_the_repacked_artifact(env: Platform) -> None:
    model_data = upload(env, adapter_artifact(base_model="s3://models-bucket/base/"))
    settings = LmiSettings(**OPTIONS)  # type: ignore[arg-type]
    first = prepare_lmi_model(
        VERSION, model_data, artifacts_bucket=env.artifacts_bucket, settings=settings
    )
    bucket, key = first.model_data_url.removeprefix("s3://").split("/", 1)
    aws.s3().put_object(Bucket=bucket, Key=key, Body=b"as first written")

    again = prepare_lmi_model(
        VERSION, model_data, artifacts_bucket=env.artifacts_bucket, settings=settings
    )

    assert again == first
    assert first.environment["HF_MODEL_ID"] == "s3://models-bucket/base/"
    assert aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read() == b"as first written"


def test_a_base_model_lmi_cannot_load_is_refused_before_anything_is_created(
    env: Platform,
) -> None:
    model_data = upload(env, adapter_artifact(base_model="smollm2-135m-instruct"))
    with pytest.raises(LmiArtifactError, match="cannot be loaded by LMI"):
        handler({"model_version": VERSION, "model_data": model_data}, lambda_context())
    packages = aws.sagemaker().list_model_packages(ModelPackageGroupName=env.model_package_group)
    assert packages["ModelPackageSummaryList"] == []


def test_a_full_model_is_served_by_lmi_as_it_is(env: Platform) -> None:
    model_data = upload(env, archive_files({"config.json": b"{}", "model.safetensors": b"w"}))

    result = handler({"model_version": VERSION, "model_data": model_data}, lambda_context())

    container = registered_container(result)
    assert container["ModelDataUrl"] == model_data
    assert container["Environment"]["HF_MODEL_ID"] == "/opt/ml/model"
    assert "OPTION_ENABLE_LORA" not in container["Environment"]


def test_the_default_backend_is_our_inference_handler(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_handler_env(monkeypatch, platform, "register")
    monkeypatch.delenv("SERVING_BACKEND", raising=False)
    start_training(platform, VERSION)
    result = handler({"model_version": VERSION, "model_data": "s3://b/k.tar.gz"}, lambda_context())
    container = registered_container(result)
    assert container["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}
    assert container["ModelDataUrl"] == "s3://b/k.tar.gz"


def test_deploy_serves_the_registered_lmi_package_without_building_again(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a version registered on LMI (Register repacked the adapter, once)
    model_data = upload(env, adapter_artifact())
    registration = handler({"model_version": VERSION, "model_data": model_data}, lambda_context())
    written = aws.s3().list_objects_v2(Bucket=env.artifacts_bucket, Prefix="models/")["Contents"]

    # When Deploy serves it
    use_handler_env(monkeypatch, env, "deploy")
    result = deploy(
        {"model_version": VERSION, "model_package_arn": registration["model_package_arn"]},
        lambda_context(),
    )

    # Then the endpoint's model is the package, and nothing was repacked again
    sagemaker = aws.sagemaker()
    config = sagemaker.describe_endpoint_config(EndpointConfigName=result["endpoint_config_name"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    # (its environment adds only the quality-metric names, which LMI ignores)
    assert model["PrimaryContainer"]["ModelPackageName"] == registration["model_package_arn"]
    assert set(model["PrimaryContainer"]["Environment"]) <= {
        "TUNELOOP_ENDPOINT_NAME",
        "TUNELOOP_MODEL_VERSION",
        "TUNELOOP_REFUSAL_PATTERNS",
    }
    assert (
        aws.s3().list_objects_v2(Bucket=env.artifacts_bucket, Prefix="models/")["Contents"]
        == written
    )
    (package_container,) = sagemaker.describe_model_package(
        ModelPackageName=registration["model_package_arn"]
    )["InferenceSpecification"]["Containers"]
    lmi_uri = f"s3://{env.artifacts_bucket}/models/{VERSION}/lmi/model.tar.gz"
    assert (package_container["Image"], package_container["ModelDataUrl"]) == (LMI_IMAGE, lmi_uri)
