"""PrepareDataset against moto: an ``s3://`` base model is sized from its config.json, and a
Train job that cannot fit the stage's GPU fails the run here, before the GPU job."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pytest

from lambdas.prepare_dataset.handler import handler
from stacks.config import load_stage_config
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tests.integration.dataset_fixtures import add_record
from tuneloop import aws
from tuneloop.planning.run_check import TrainingCapacityError

__all__ = ["aws_credentials", "platform"]

EVENT = {"execution_name": "v0001-20260101-000000", "execution_arn": ""}
MODELS_BUCKET = "acme-models"
# The numbers of each model card's config.json (huggingface.co/<id>/blob/main/config.json).
SMOLLM2_360M = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 960,
    "intermediate_size": 2560,
    "num_hidden_layers": 32,
    "num_attention_heads": 15,
    "num_key_value_heads": 5,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
LLAMA_3_1_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def stage_env(
    monkeypatch: pytest.MonkeyPatch,
    platform: Platform,
    base_model: str,
    stage: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> None:
    """PrepareDataset's environment with the dev stage's TRAINING_CAPACITY (ml.g5.2xlarge,
    its training settings; ``stage`` changes the stage config) for ``base_model``, as the
    CDK app sets it."""
    use_handler_env(monkeypatch, platform, "prepare_dataset")
    monkeypatch.setenv("HELDOUT_FRACTION", "0")
    config = load_stage_config("dev", {"base_model": base_model})
    config = dataclasses.replace(config, **(stage or {}))
    settings = config.training_capacity_settings()
    settings = dataclasses.replace(settings, **overrides)
    monkeypatch.setenv("TRAINING_CAPACITY", settings.to_json())


def put_model(prefix: str, config: dict[str, Any]) -> str:
    s3 = aws.s3()
    s3.create_bucket(Bucket=MODELS_BUCKET)
    s3.put_object(Bucket=MODELS_BUCKET, Key=f"{prefix}/config.json", Body=json.dumps(config))
    s3.put_object(Bucket=MODELS_BUCKET, Key=f"{prefix}/model.safetensors", Body=b"weights")
    return f"s3://{MODELS_BUCKET}/{prefix}/"


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    """``(level, verdict, message)`` of each capacity verdict the handler logged."""
    return [
        (record.levelname, str(record.verdict), record.getMessage())
        for record in caplog.records
        if hasattr(record, "verdict")
    ]


def exported(platform: Platform) -> list[str]:
    listing = aws.s3().list_objects_v2(Bucket=platform.curated_bucket, Prefix="datasets/")
    return [item["Key"] for item in listing.get("Contents", [])]


@pytest.fixture
def records(platform: Platform) -> Platform:
    add_record(platform, "a", "support", {"text": "first"})
    add_record(platform, "b", "support", {"text": "second"})
    return platform


def test_a_model_that_fits_the_stage_gpu_prepares_the_dataset(
    records: Platform, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the dev stage (ml.g5.2xlarge) with a 360M model in S3
    stage_env(monkeypatch, records, put_model("smollm2-360m", SMOLLM2_360M))
    # When the step runs
    result = handler(EVENT, lambda_context())
    # Then the verdict is logged and the training set exported
    assert result["record_count"] == 2
    assert f"datasets/{EVENT['execution_name']}/train.jsonl" in exported(records)
    ((level, verdict, message),) = logged(caplog)
    assert (level, verdict) == ("INFO", "fits")
    assert "ml.g5.2xlarge (1 x A10G 24 GiB) fits: 7.8 GiB per GPU estimated" in message


def test_a_model_too_big_for_the_stage_gpu_fails_the_run_naming_what_to_change(
    records: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the dev stage (enforce) with an 8B model in S3: its fp32 base alone is 29.9 GiB
    base_model = put_model("llama-3.1-8b", LLAMA_3_1_8B)
    stage_env(monkeypatch, records, base_model)
    # When the step runs
    with pytest.raises(TrainingCapacityError) as raised:
        handler(EVENT, lambda_context())
    # Then the run fails before anything is exported, naming the fix and the way around it
    message = str(raised.value)
    assert f"base model {base_model}" in message
    assert "ml.g5.2xlarge (1 x A10G 24 GiB) cannot hold this training" in message
    assert "65.1 GiB per GPU estimated, 21.6 GiB usable" in message
    assert "training_instance_type ml.p4de.24xlarge" in message
    assert "training_capacity_check 'warn'" in message
    assert exported(records) == []


def test_under_warn_a_model_that_does_not_fit_is_logged_and_the_run_goes_on(
    records: Platform, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the same 8B model, with the stage's check set to warn
    base_model = put_model("llama-3.1-8b", LLAMA_3_1_8B)
    stage_env(monkeypatch, records, base_model, training_capacity_check="warn")
    # When the step runs
    result = handler(EVENT, lambda_context())
    # Then the dataset is prepared and the verdict is in the log as a warning
    assert result["record_count"] == 2
    ((level, verdict, message),) = logged(caplog)
    assert (level, verdict) == ("WARNING", "does_not_fit")
    assert "cannot hold this training" in message
    assert "training_instance_type ml.p4de.24xlarge" in message


@pytest.mark.parametrize(
    ("instances", "verdict", "peak"),
    [(2, "does_not_fit", "25.2 GiB per GPU"), (4, "fits", "17.6 GiB per GPU")],
)
def test_a_sharded_train_job_is_sized_over_every_gpu_of_its_instances(
    records: Platform,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    instances: int,
    verdict: str,
    peak: str,
) -> None:
    # Given the 8B model sharded (fsdp, with checkpointing) over one-GPU ml.g5.4xlarge
    # instances, under warn so both verdicts are logged
    base_model = put_model("llama-3.1-8b", LLAMA_3_1_8B)
    dev = load_stage_config("dev", {})
    training = dataclasses.replace(dev.training, sharding="fsdp", gradient_checkpointing=True)
    stage = {
        "training": training,
        "training_instance_type": "ml.g5.4xlarge",
        "training_instance_count": instances,
        "training_capacity_check": "warn",
    }
    stage_env(monkeypatch, records, base_model, stage)
    # When the step runs
    handler(EVENT, lambda_context())
    # Then it is planned over every GPU of every instance: 2 do not hold it, 4 do
    ((_, logged_verdict, message),) = logged(caplog)
    assert logged_verdict == verdict
    assert f"ml.g5.4xlarge (1 x A10G 24 GiB) x {instances} instances" in message
    assert peak in message


@pytest.mark.parametrize(
    ("base_model", "reason"),
    [
        (f"s3://{MODELS_BUCKET}/no-config/", "cannot read"),
        (f"s3://{MODELS_BUCKET}/champion/model.tar.gz", "is an archive"),
    ],
)
def test_a_model_whose_config_cannot_be_read_is_not_sized_and_the_run_goes_on(
    records: Platform,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    base_model: str,
    reason: str,
) -> None:
    # Given an s3:// base model without a readable config.json (the trainer will say more)
    aws.s3().create_bucket(Bucket=MODELS_BUCKET)
    stage_env(monkeypatch, records, base_model)
    # When the step runs
    result = handler(EVENT, lambda_context())
    # Then the check is skipped with the reason, and the dataset is prepared
    assert result["record_count"] == 2
    ((level, verdict, message),) = logged(caplog)
    assert (level, verdict) == ("WARNING", "skipped")
    assert message.startswith("base model size unknown: ")
    assert base_model.rstrip("/") in message and reason in message


def test_a_base_model_synth_has_checked_is_not_read_again(
    records: Platform, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the dev stage's own catalogued base model (synth sized it)
    stage_env(monkeypatch, records, "hf://HuggingFaceTB/SmolLM2-1.7B-Instruct")
    # When the step runs
    handler(EVENT, lambda_context())
    # Then no capacity verdict is logged (nothing was read from S3)
    assert logged(caplog) == []
