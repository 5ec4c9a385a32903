"""FSDP as a stage setting: ``training.sharding`` is validated against the Train job's GPUs
and what train.py accepts, reaches train.py as the hyperparameter it parses, and the synth
and run-time capacity checks plan it over every GPU of every instance."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ConfigError, StageConfig, load_stage_config
from tuneloop.cli import main
from tuneloop.planning.estimate import GIB, Plan, TrainingSetup
from tuneloop.planning.run_check import CapacitySettingsError, TrainingCapacitySettings
from tuneloop.planning.shapes import catalogue_shape
from tuneloop.planning.verdict import DOES_NOT_FIT, check, check_training
from tuneloop.training.config import TrainConfig, TrainingError, parse_hyperparameters


def dev_with(training: dict[str, Any] | None = None, **changes: Any) -> StageConfig:
    """The dev stage (SmolLM2-1.7B LoRA on ml.g5.2xlarge) with these changes, validated."""
    dev = load_stage_config("dev", {})
    return dataclasses.replace(
        dev, training=dataclasses.replace(dev.training, **(training or {})), **changes
    )


def test_sharding_defaults_to_none_and_rejects_other_values() -> None:
    assert load_stage_config("dev", {}).training.sharding == "none"
    with pytest.raises(ConfigError) as raised:
        dev_with({"sharding": "zero3"})
    assert "training.sharding must be 'none' or 'fsdp'" in str(raised.value)
    assert "got 'zero3'" in str(raised.value)


def test_fsdp_on_one_gpu_fails_naming_what_to_change() -> None:
    # Given dev's one-GPU instance type, one instance
    with pytest.raises(ConfigError) as raised:
        dev_with({"sharding": "fsdp"})
    message = str(raised.value)
    # Then synth fails: one process has nothing to shard over, and the message says what to set
    assert "training.sharding 'fsdp' shards over the Train job's processes" in message
    assert "one instance of ml.g5.2xlarge (1 x A10G 24 GiB) runs one" in message
    assert "training_instance_count to 2 or more" in message
    assert "several GPUs (e.g. ml.g5.12xlarge (4 x A10G 24 GiB))" in message
    assert "or training.sharding 'none'" in message
    # The local stage's CPU type runs one process per instance
    local = load_stage_config("local", {})
    with pytest.raises(ConfigError, match=r"ml\.m5\.xlarge \(CPU: one process\) runs one"):
        dataclasses.replace(local, training=dataclasses.replace(local.training, sharding="fsdp"))


@pytest.mark.parametrize(
    ("instance_type", "count", "gpus"),
    [("ml.g5.12xlarge", 1, 4), ("ml.g5.2xlarge", 2, 2), ("ml.g5.12xlarge", 2, 8)],
)
def test_fsdp_is_accepted_on_several_gpus_and_planned_over_all_of_them(
    instance_type: str, count: int, gpus: int
) -> None:
    # Given fsdp on a multi-GPU type, or on several instances of a one-GPU type
    sharded = dev_with(
        {"sharding": "fsdp"}, training_instance_type=instance_type, training_instance_count=count
    )
    unsharded = dev_with(training_instance_type=instance_type, training_instance_count=count)
    # Then synth's verdict divides the sharded state by every GPU of the job (world size)
    verdict, plain = sharded.training_capacity(), unsharded.training_capacity()
    assert verdict.fits and verdict.estimate is not None and plain.estimate is not None
    for name in ("weights", "adapter", "optimizer state"):
        assert verdict.estimate.part(name) == pytest.approx(plain.estimate.part(name) / gpus, abs=1)
    # Activations are per GPU either way; unsharded, each instance loads the model once per
    # GPU, sharded once in all (rank 0; the other processes start on the meta device)
    assert verdict.estimate.part("activations") == plain.estimate.part("activations")
    per_instance = gpus // count
    assert verdict.estimate.host_bytes * per_instance == plain.estimate.host_bytes
    assert (f" x {count} instances fits" in verdict.message) == (count > 1)


def test_fsdp_with_quantize_4bit_fails_synth_with_the_trainers_reason() -> None:
    with pytest.raises(TrainingError) as trainer:
        TrainConfig(sharding="fsdp", quantize_4bit=True).validate()
    with pytest.raises(ConfigError) as raised:
        dev_with(
            {"sharding": "fsdp", "quantize_4bit": True}, training_instance_type="ml.g5.12xlarge"
        )
    assert f"training.hyperparameters rejected by train.py: {trainer.value}" in str(raised.value)


def test_the_sharding_setting_reaches_the_trainer_as_it_parses_it(tmp_path: Path) -> None:
    # Given a sharded stage's Train hyperparameters as the state machine passes them (strings)
    config = dev_with({"sharding": "fsdp"}, training_instance_type="ml.g5.12xlarge")
    hyperparameters = {"base_model": config.base_model, **config.training.as_hyperparameters()}
    assert hyperparameters["sharding"] == "fsdp"
    assert load_stage_config("dev", {}).training.as_hyperparameters()["sharding"] == "none"
    # When the trainer parses them as SageMaker hands them over (SM_HPS)
    parsed = parse_hyperparameters([], {"SM_HPS": json.dumps(hyperparameters)}, tmp_path)
    # Then it shards
    assert parsed.sharding == "fsdp"


def test_the_run_time_check_gets_the_stages_sharding_and_instance_count() -> None:
    config = dev_with(
        {"sharding": "fsdp"}, training_instance_type="ml.g5.2xlarge", training_instance_count=4
    )
    settings = config.training_capacity_settings()
    assert settings.training_instance_count == 4
    assert settings.hyperparameters["sharding"] == "fsdp"
    assert TrainingCapacitySettings.from_json(settings.to_json()) == settings
    # Settings written before the count existed read as one instance
    older = json.loads(settings.to_json())
    del older["training_instance_count"]
    assert TrainingCapacitySettings.from_json(json.dumps(older)).training_instance_count == 1
    with pytest.raises(CapacitySettingsError, match="training_instance_count must be"):
        TrainingCapacitySettings.from_json(json.dumps({**older, "training_instance_count": 0}))
    # The verdict the run check gives is synth's
    verdict = check_training(
        settings.hyperparameters, settings.training_instance_type, instance_count=4
    )
    assert verdict.message == config.training_capacity().message


def test_the_planner_does_not_suggest_what_the_trainer_or_the_stage_rejects() -> None:
    # Given SmolLM2-1.7B fully fine-tuned, 2 x 2048 tokens, sharded over ml.g5.12xlarge's
    # four GPUs, which does not fit
    shape = catalogue_shape("hf://HuggingFaceTB/SmolLM2-1.7B-Instruct")
    assert shape is not None
    setup = TrainingSetup(method="full", max_seq_length=2048, batch_size=2, sharding="fsdp")
    verdict = check(Plan(shape, setup), "ml.g5.12xlarge")
    assert verdict.status == DOES_NOT_FIT and not verdict.together
    changes = {change.setting: change for change in verdict.changes}
    # Then QLoRA, which the trainer does not shard, comes with sharding none (and LoRA)
    qlora = changes["quantize_4bit"]
    assert qlora.value == "true (QLoRA, with finetune_method lora and sharding none)"
    assert qlora.also == ("finetune_method", "sharding")
    # And a one-GPU type, where fsdp has nothing to shard over, also says sharding none
    moved = changes["training_instance_type"]
    assert moved.value == "ml.g6e.xlarge (1 x L40S 48 GiB)"
    assert (moved.note, moved.also) == ("with sharding none", ("sharding",))


def test_plan_command_plans_fsdp_over_several_instances(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given Llama 3.1 8B fully fine-tuned with FSDP on ml.g6e.12xlarge (docs/training.md),
    # which its 4 GPUs cannot hold
    argv = ["plan", "--base-model", "hf://meta-llama/Llama-3.1-8B", "--method", "full"]
    argv += ["--max-seq-length", "2048", "--batch-size", "1", "--checkpointing"]
    argv += ["--instance-type", "ml.g6e.12xlarge", "--sharding", "fsdp", "--json"]
    assert main(argv) == 1
    one = json.loads(capsys.readouterr().out)
    # When the job has two such instances
    assert main([*argv, "--instance-count", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    # Then the state is sharded over 8 GPUs, and the model is loaded once (by rank 0)
    assert two["setup"]["instances"] == 2
    assert round(one["estimate"]["peak_bytes"] / GIB, 1) == 45.3
    assert round(two["estimate"]["peak_bytes"] / GIB, 1) == 34.1
    assert two["estimate"]["host_bytes"] == one["estimate"]["host_bytes"]
    assert "x 2 instances fits" in two["verdict"]["message"]
