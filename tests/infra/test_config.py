"""The stage config: validation names the field; a bad config fails synth."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.config import (
    STAGES,
    ConfigError,
    StageConfig,
    TrainingHyperparameters,
    load_stage_config,
)
from tests.infra.conftest import PROJECT_ROOT, Assembly


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_loads(stage: str) -> None:
    config = load_stage_config(stage, {})
    assert config.stage == stage
    policy = json.loads(config.gate_policy.to_json())
    assert {"suites", "bootstrap_samples", "confidence", "seed"} == set(policy)
    assert policy["suites"]["mmlu"]["role"] == "general"
    assert 0 < policy["suites"]["mmlu"]["delta"] <= 0.25


def test_local_gate_policy_gates_on_the_demo_benchmark() -> None:
    policy = json.loads(load_stage_config("local", {}).gate_policy.to_json())
    must_pass = [name for name, suite in policy["suites"].items() if suite["role"] == "must_pass"]
    examples = Path(__file__).resolve().parents[2] / "examples" / "benchmarks"
    assert must_pass and all((examples / f"{name}.jsonl").is_file() for name in must_pass)


def test_local_stage_is_tiny_and_disposable() -> None:
    local = load_stage_config("local", {})
    assert local.base_model == "smollm2-135m-instruct"
    assert local.training.max_steps == 20  # enough to learn the demo's facts
    assert local.evaluation.mmlu_subset_size == 50
    assert local.endpoint_poll_seconds == 2
    assert not local.retain_data
    assert load_stage_config("prod", {}).termination_protection


def test_unknown_stage_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown stage 'qa'; valid stages: dev, local, prod"):
        load_stage_config("qa", {})


def test_overrides_replace_base_model_and_threshold(tmp_path: object) -> None:
    config = load_stage_config("local", {"base_model": str(tmp_path), "retrain_threshold": "3"})
    assert (config.base_model, config.retrain_threshold) == (str(tmp_path), 3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"retrain_threshold": "-1"}, "stage 'dev': retrain_threshold must be > 0, got -1"),
        (
            {"retrain_threshold": "many"},
            "stage 'dev': retrain_threshold must be an integer, got 'many'",
        ),
        ({"base_model": "/models/tiny"}, "stage 'dev': base_model must be"),
        ({"training_instance_type": "x"}, "'training_instance_type' cannot be overridden"),
        ({"console_domain_prefix": "Acme_Console"}, "stage 'dev': console_domain_prefix"),
    ],
)
def test_bad_override_names_the_field(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_stage_config("dev", overrides)


def test_the_console_domain_prefix_can_be_overridden_per_deployment() -> None:
    # Hosted UI prefixes are unique per region across accounts: each deployment picks its own.
    config = load_stage_config("dev", {"console_domain_prefix": " acme-tuneloop-dev "})
    assert config.console_domain_prefix == "acme-tuneloop-dev"


def test_nested_fields_are_named_with_their_path() -> None:
    dev = load_stage_config("dev", {})
    with pytest.raises(ConfigError) as raised:
        dataclasses.replace(
            dev,
            training=dataclasses.replace(dev.training, lora_dropout=1.5),
            log_retention_days=10,
        )
    text = str(raised.value)
    assert text.startswith("stage 'dev': ")
    assert "training.lora_dropout must be in [0, 1), got 1.5" in text
    assert "log_retention_days must be one of CloudWatch Logs' retention periods" in text


def test_the_training_settings_the_planner_names_are_checked_with_their_path() -> None:
    dev = load_stage_config("dev", {})
    with pytest.raises(ConfigError) as raised:
        dataclasses.replace(
            dev,
            training=dataclasses.replace(
                dev.training,
                gradient_accumulation_steps=0,
                gradient_checkpointing="yes",  # type: ignore[arg-type]
            ),
        )
    text = str(raised.value)
    assert "training.gradient_accumulation_steps must be > 0, got 0" in text
    assert "training.gradient_checkpointing must be a bool, got 'yes'" in text


def test_config_is_frozen_and_keyword_only() -> None:
    config = load_stage_config("dev", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.retrain_threshold = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        TrainingHyperparameters(10, 0.1, 8, 16, 0.0, 128, 2)  # type: ignore[call-arg]
    assert isinstance(config, StageConfig)


def _run_app(
    context: dict[str, str], region: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }
    env.pop("CDK_OUTDIR", None)
    env.pop("CDK_DEFAULT_REGION", None)
    if region is not None:  # as the CLI sets it: the region it deploys to
        env["CDK_DEFAULT_REGION"] = region
    return subprocess.run(
        [sys.executable, "app.py"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bad_context_fails_synth_naming_the_field() -> None:
    # When app.py runs with an invalid override
    result = _run_app({"stage": "dev", "retrain_threshold": "-1"})
    # Then it exits non-zero with the field in the message, not a stack trace
    assert result.returncode == 1
    assert "error: stage 'dev': retrain_threshold must be > 0, got -1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_misspelled_context_key_fails_synth_naming_the_closest_key() -> None:
    # When app.py runs with a typo in a context key (today silently ignored)
    result = _run_app({"stage": "dev", "retrain_thresold": "3"})
    # Then synth stops with the key and the one that was meant
    assert result.returncode == 1
    assert (
        "error: context key 'retrain_thresold' is not a setting "
        "(did you mean 'retrain_threshold'?)" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_region_without_the_pinned_layers_fails_synth() -> None:
    # When the CLI would deploy to a region where the pinned pandas layer is not published
    result = _run_app({"stage": "dev"}, region="ap-east-1")
    # Then synth stops naming the region, what it lacks and the supported regions
    assert result.returncode == 1
    assert "error: region 'ap-east-1' is not supported: " in result.stderr
    assert "AWSSDKPandas-Python312:16" in result.stderr
    assert "Supported regions: af-south-1, " in result.stderr
    assert "Traceback" not in result.stderr


def test_a_gate_policy_the_gate_would_reject_fails_synth() -> None:
    policy = {"suites": {"mmlu": {"role": "general", "metric": "accuracy", "delta": 0.05}}}
    result = _run_app({"stage": "dev", "gate_policy": json.dumps(policy)})
    assert result.returncode == 1
    assert (
        "error: stage 'dev': gate_policy: suites.mmlu.metric: one of acc, acc_norm, perplexity"
        in result.stderr
    )


def test_prepare_dataset_and_gate_read_the_stage_config_s_values(local: Assembly) -> None:
    # Given the synthesized functions, by handler
    variables = {
        fn["Properties"]["Handler"]: fn["Properties"]["Environment"]["Variables"]
        for fn in local.resources("AWS::Lambda::Function").values()
    }
    prepare = variables["lambdas.prepare_dataset.handler.handler"]
    config = load_stage_config("local", {})
    # Then held-out and replay settings and the gate policy are the stage config's
    assert (
        float(prepare["HELDOUT_FRACTION"]),
        int(prepare["HELDOUT_MAX_RECORDS"]),
        float(prepare["REPLAY_RATIO"]),
    ) == dataclasses.astuple(config.dataset)
    gate = variables["lambdas.gate.handler.handler"]
    assert prepare["GATE_POLICY"] == gate["GATE_POLICY"] == config.gate_policy.to_json()


def test_unknown_stage_fails_synth() -> None:
    result = _run_app({"stage": "staging"})
    assert result.returncode == 1
    assert "unknown stage 'staging'; valid stages: dev, local, prod" in result.stderr


def test_ingest_settings_can_be_overridden_from_context() -> None:
    config = load_stage_config("prod", {"ingest": '{"redactors": ["email", "comprehend"]}'})
    assert config.ingest.redactors == ("email", "comprehend")
    assert config.ingest.write_transactions_in_flight == 4  # the stage's value is kept
    with pytest.raises(ConfigError, match=r"stage 'prod': ingest settings: redactors must be"):
        load_stage_config("prod", {"ingest": {"redactors": ["names"]}})
