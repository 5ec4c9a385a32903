"""The Train task's SageMaker settings: S3 checkpoints, managed spot per stage, and metric
definitions that really parse what the trainer prints."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ConfigError, load_stage_config
from tests.infra.conftest import Assembly


def _states(assembly: Assembly) -> dict[str, Any]:
    machine = assembly.state_machine("Retrain")
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else "<cfn>" for part in parts)
    return dict(json.loads(text)["States"])


def test_train_checkpoints_sync_with_a_per_version_s3_prefix(dev: Assembly) -> None:
    params = _states(dev)["Train"]["Parameters"]
    assert params["CheckpointConfig"] == {
        "S3Uri.$": "States.Format('s3://<cfn>/checkpoints/{}/', $.dataset.model_version)",
        "LocalPath": "/opt/ml/checkpoints",
    }
    # The trainer saves where SageMaker syncs, often enough to lose little on a reclaim.
    hyper = params["HyperParameters"]
    assert "checkpoint_dir" not in hyper  # the trainer's default is /opt/ml/checkpoints
    assert int(hyper["checkpoint_steps"]) > 0
    # Evaluate is short and restartable: no checkpoints, no spot.
    evaluate = _states(dev)["Evaluate"]["Parameters"]
    assert "CheckpointConfig" not in evaluate and "EnableManagedSpotTraining" not in evaluate


def test_dev_trains_on_spot_with_a_wait_bound_above_the_runtime(dev: Assembly) -> None:
    params = _states(dev)["Train"]["Parameters"]
    config = load_stage_config("dev", {})
    assert params["EnableManagedSpotTraining"] is True
    assert params["StoppingCondition"] == {
        "MaxRuntimeInSeconds": config.training_max_runtime_minutes * 60,
        "MaxWaitTimeInSeconds": config.training_spot_max_wait_minutes * 60,
    }
    assert config.training_spot_max_wait_minutes >= config.training_max_runtime_minutes


def test_local_stage_runs_on_demand_and_prod_config_too(local: Assembly) -> None:
    params = _states(local)["Train"]["Parameters"]
    assert "EnableManagedSpotTraining" not in params
    assert "MaxWaitTimeInSeconds" not in params["StoppingCondition"]
    assert "CheckpointConfig" in params
    assert load_stage_config("prod", {}).training_spot is False


def test_spot_wait_shorter_than_the_runtime_fails_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="training_spot_max_wait_minutes"):
        load_stage_config("dev", {"training_spot_max_wait_minutes": 10})


def test_sagemaker_role_may_sync_checkpoints(dev: Assembly) -> None:
    pipeline = dev.template("Pipeline")
    statements = [
        statement
        for resource in pipeline["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy"
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]
    text = json.dumps(statements)
    assert "/checkpoints/*" in text


def test_metric_definitions_parse_the_trainers_real_output(
    dev: Assembly,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each regex of the Train task, run on what a tiny training job printed, finds the
    values the job reports."""
    from tests.unit.tiny_models import make_tiny_causal_lm
    from training_containers.train import main

    definitions = {
        d["Name"]: d["Regex"]
        for d in _states(dev)["Train"]["Parameters"]["AlgorithmSpecification"]["MetricDefinitions"]
    }
    assert set(definitions) == {"train_loss", "train_tokens_per_second"}

    base = make_tiny_causal_lm(tmp_path / "base")
    channel = tmp_path / "train"
    channel.mkdir()
    record = {"text": "the router resets with the button on its back"}
    channel.joinpath("train.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    for name, path in [
        ("SM_CHANNEL_TRAIN", channel),
        ("SM_MODEL_DIR", tmp_path / "model"),
        ("SM_OUTPUT_DATA_DIR", tmp_path / "output/data"),
        ("SM_OUTPUT_DIR", tmp_path / "output"),
        ("SM_INPUT_CONFIG_DIR", tmp_path / "config"),
    ]:
        monkeypatch.setenv(name, str(path))
    monkeypatch.delenv("SM_HPS", raising=False)
    monkeypatch.delenv("SM_NUM_GPUS", raising=False)
    args = ["--base_model", str(base), "--max_steps", "3", "--max_seq_length", "32"]
    assert main([*args, "--checkpoint_dir", str(tmp_path / "ckpt")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "output/data/training_report.json").read_text())

    losses = [float(v) for v in re.findall(definitions["train_loss"], printed)]
    assert losses == pytest.approx(report["losses"], abs=1e-6)
    (speed,) = [float(v) for v in re.findall(definitions["train_tokens_per_second"], printed)]
    assert speed == pytest.approx(report["tokens_per_second"], abs=0.1)


def test_train_and_evaluate_run_on_one_instance_by_default(dev: Assembly) -> None:
    states = _states(dev)
    assert load_stage_config("dev", {}).training_instance_count == 1
    assert states["Train"]["Parameters"]["ResourceConfig"]["InstanceCount"] == 1
    assert states["Evaluate"]["Parameters"]["ResourceConfig"]["InstanceCount"] == 1


def test_train_spans_the_stages_instance_count_on_spot_too() -> None:
    """Multi-node and managed spot together: one request with both (SageMaker restarts the
    whole job on a reclaim; every instance restores the same checkpoint prefix)."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_s3 as s3

    from stacks.constructs.retrain_state_machine import train_job_extras, training_job

    config = dataclasses.replace(load_stage_config("dev", {}), training_instance_count=4)
    assert config.training_spot
    stack = Stack(App(), "Jobs")
    artifacts = s3.Bucket(stack, "Artifacts")
    task = training_job(
        stack,
        "Train",
        config=config,
        role=iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com")),
        image_uri="example.dkr.ecr.us-east-1.amazonaws.com/training:1",
        submit_directory="s3://bucket/sourcedir.tar.gz",
        artifacts=artifacts,
        program="train.py",
        name_suffix="train",
        channels={"train": "$.dataset.train_s3_uri"},
        hyperparameters={},
        result_selector={},
        result_path="$.train",
        extra=train_job_extras(config, artifacts),
        instance_count=config.training_instance_count,
    )
    params = stack.resolve(task.to_state_json())["Parameters"]
    assert params["ResourceConfig"]["InstanceCount"] == 4
    assert params["EnableManagedSpotTraining"] is True
    assert "CheckpointConfig" in params


@pytest.mark.parametrize("count", [0, -1, 2.5, True, "2", 65])
def test_bad_instance_count_fails_naming_the_field(count: Any) -> None:
    config = load_stage_config("dev", {})
    with pytest.raises(ConfigError, match="training_instance_count must be an integer from 1"):
        dataclasses.replace(config, training_instance_count=count)


def test_multi_node_on_spot_is_a_valid_stage() -> None:
    config = dataclasses.replace(load_stage_config("dev", {}), training_instance_count=64)
    assert (config.training_spot, config.training_instance_count) == (True, 64)
