"""The capacity planner: each part of the estimate against numbers worked out by hand for a
tiny config, the catalogue against the model cards, the verdicts (a 70B full fine-tune on a
24 GiB GPU is refused, naming what to change), the stage check at synth, ``tuneloop plan``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from stacks.config import ConfigError, load_stage_config
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.cli import main
from tuneloop.planning.estimate import GIB, Plan, PlanError, TrainingSetup
from tuneloop.planning.run_check import (
    CapacitySettingsError,
    TrainingCapacitySettings,
    model_config_location,
)
from tuneloop.planning.shapes import ModelShape, catalogue_shape, shape_for
from tuneloop.planning.verdict import DOES_NOT_FIT, FITS, SKIPPED, check, recommend
from tuneloop.training.config import parse_hyperparameters

# The tiny Llama of tests/unit/tiny_models.py: hidden 32, MLP 64, 2 layers, 4 heads of 8,
# 2 key/value heads, 259 tokens, tied embeddings.
TINY = ModelShape(
    name="tiny",
    model_type="llama",
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    vocab_size=259,
    tie_word_embeddings=True,
)
# LoRA r 4 on all seven projections, fp32, 2 packed rows of 16 tokens, no checkpointing.
SETUP = TrainingSetup(method="lora", precision="fp32", max_seq_length=16, batch_size=2, lora_r=4)


def parts(plan: Plan) -> dict[str, int]:
    return {c.name: c.bytes for c in plan.estimate(overhead_bytes=0).components}


def test_each_part_of_a_lora_estimate_matches_the_hand_computation() -> None:
    # Parameters: embedding 259*32 = 8288; per block q 32*32, k 32*16, v 32*16, o 32*32,
    # gate/up/down 32*64 each = 9216, norms 2*32 -> 9280; two blocks; final norm 32.
    assert TINY.parameters == 8288 + 2 * 9280 + 32 == 26880
    # LoRA r 4: r*(in+out) per projection: q 256, k 192, v 192, o 256, gate/up/down 384
    # each = 2048 per block, 4096 in all.
    got = parts(Plan(TINY, SETUP))
    assert got["weights"] == 26880 * 4
    assert got["adapter"] == 4096 * 4
    assert got["optimizer state"] == 4096 * 8
    assert got["gradients"] == 4096 * 4
    # Per token and block (bytes): residual at both norms 2*4*32 = 256; rotated q, k and v
    # (k/v repeated to 4 heads: packed rows carry a mask) and the attention output
    # 4*(2*32 + 2*32) = 512; log-sum-exp 4*4 = 16; the mask row 4*16 = 64; gate, its SiLU
    # and up 3*4*64 = 768; the adapters' inputs: lora_B's 7*4*4 = 112, lora_A's shared
    # fp32 inputs (attention norm 128, MLP norm 128, MLP product 4*64 = 256) = 512.
    per_token = 256 + 512 + 16 + 64 + 768 + 112 + 512
    assert per_token == 2240
    tokens = 2 * 16
    # Two blocks, plus the final norm's input (4*32 per token).
    assert got["activations"] == 2 * per_token * tokens + 4 * 32 * tokens == 147456
    assert got["logits"] == tokens * 259 * 12 == 99456
    assert "frozen weight copies" not in got and "autocast weight copies" not in got
    # The peak: weights + adapter + optimizer all step, then the forward phase (activations
    # and logits) outweighs the backward's gradients.
    estimate = Plan(TINY, SETUP).estimate(overhead_bytes=0)
    assert estimate.peak_phase == "forward"
    assert estimate.peak_bytes == (107520 + 16384 + 32768) + (147456 + 99456) == 403584
    assert estimate.trainable_parameters == 4096


def test_gradient_checkpointing_keeps_block_inputs_and_recomputes_one_block() -> None:
    got = parts(Plan(TINY, dataclasses.replace(SETUP, gradient_checkpointing=True)))
    tokens = 32
    # Per token: each block's fp32 input 4*32 (two blocks), the final norm's input 4*32 and
    # the packed rows' one-byte mask row (16 bytes) that every block keeps as an input.
    assert got["activations"] == (2 * 128 + 128 + 16) * tokens == 12800
    # One block's full set (2240 B a token) plus its gradients in and out (2*4*32 a token).
    assert got["recomputed block"] == (2240 + 256) * tokens == 79872
    estimate = Plan(TINY, dataclasses.replace(SETUP, gradient_checkpointing=True)).estimate(
        overhead_bytes=0
    )
    # forward: 12800 + logits 99456 = 112256 > recompute: 12800 + 79872 + gradients 16384.
    assert estimate.peak_phase == "forward"
    assert estimate.peak_bytes == 156672 + 112256


def test_full_bf16_counts_autocast_copies_and_the_head_gradient() -> None:
    setup = dataclasses.replace(SETUP, method="full", precision="bf16", max_seq_length=4)
    got = parts(Plan(TINY, setup))
    assert got["weights"] == got["gradients"] == 26880 * 4
    assert got["optimizer state"] == 26880 * 8
    # autocast's bf16 copies: every block linear (2*9216) and the (tied) head (259*32).
    assert got["autocast weight copies"] == (2 * 9216 + 8288) * 2
    # 8 positions: 12 B per logit is 24864, less than 4 B per logit + the head's gradient.
    assert got["logits"] == max(8 * 259 * 12, 8 * 259 * 4 + 8288 * 4) == 41440
    # Tied embeddings: at the end of backward the embedding's own gradient lives beside the
    # gradients (under autocast it is added in place), which here outweigh the forward phase.
    assert got["tied embedding gradient"] == 8288 * 4
    estimate = Plan(TINY, setup).estimate(overhead_bytes=0)
    assert estimate.peak_phase == "backward"
    assert estimate.phase("backward") == 26880 * 4 + 8288 * 4
    # In fp32 the sum is a new tensor: the embedding's gradient and the sum.
    fp32 = parts(Plan(TINY, dataclasses.replace(setup, precision="fp32")))
    assert fp32["tied embedding gradient"] == 2 * 8288 * 4


def test_accumulation_keeps_gradients_all_step_and_fsdp_divides_the_state() -> None:
    accumulate = Plan(TINY, dataclasses.replace(SETUP, gradient_accumulation_steps=4))
    grads = next(c for c in accumulate.estimate().components if c.name == "gradients")
    assert grads.lives == ("run",)
    one = parts(Plan(TINY, dataclasses.replace(SETUP, method="full")))
    sharded = parts(Plan(TINY, dataclasses.replace(SETUP, method="full", gpus=4, sharding="fsdp")))
    for name in ("weights", "optimizer state"):
        assert sharded[name] == pytest.approx(one[name] / 4, abs=1)
    # The blocks' gradients are sharded; the root unit's (embedding, final norm: 26880 -
    # 2 x 9280 parameters) stay full size until its reduce-scatter after the backward pass.
    root = 26880 - 2 * 9280
    assert sharded["gradients"] == (26880 - root) * 4 / 4
    assert sharded["gathered root unit"] == root * 4
    assert sharded["gathered blocks"] == 2 * 9280 * 4  # the one running, the next prefetched
    assert sharded["reduce-scatter buffer"] == 9280 * 4
    assert sharded["activations"] == one["activations"]  # data parallel: not divided
    # LoRA under FSDP makes no bf16 copies of the frozen weights: each call casts its own,
    # saved for the backward pass (measured: capacity_estimate.py --sharding fsdp)
    lora_bf16 = dataclasses.replace(SETUP, precision="bf16", gpus=4, sharding="fsdp")
    lora = parts(Plan(TINY, lora_bf16))
    assert "frozen weight copies" not in lora
    assert lora["frozen weight casts"] == 2 * 9216 * 2


def test_catalogue_parameter_counts_match_the_model_cards() -> None:
    expected = {
        "hf://HuggingFaceTB/SmolLM2-135M-Instruct": 134.5e6,
        "HuggingFaceTB/SmolLM2-360M": 361.8e6,
        "hf://HuggingFaceTB/SmolLM2-1.7B-Instruct": 1.711e9,
        "meta-llama/Llama-3.1-8B": 8.030e9,
        "meta-llama/Llama-3.1-70B-Instruct": 70.55e9,
        "Qwen/Qwen2.5-7B-Instruct": 7.616e9,
        "mistralai/Mistral-7B-v0.3": 7.248e9,
    }
    for ref, count in expected.items():
        shape = catalogue_shape(ref)
        assert shape is not None, ref
        assert shape.parameters == pytest.approx(count, rel=2e-3), ref


def test_a_model_folder_is_read_from_its_config(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    folder = make_tiny_causal_lm(tmp_path / "tiny")
    shape, reason = shape_for(str(folder))
    assert shape is not None, reason
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert shape.parameters == model.num_parameters() == TINY.parameters
    assert shape_for("s3://bucket/model/")[0] is None
    assert "catalogue" in shape_for("hf://someone/unknown-model")[1]


def test_a_70b_full_fine_tune_on_a_g5_2xlarge_is_refused_naming_what_to_change() -> None:
    shape = catalogue_shape("meta-llama/Llama-3.1-70B")
    assert shape is not None
    plan = Plan(shape, TrainingSetup(method="full", max_seq_length=2048, batch_size=1))
    verdict = check(plan, "ml.g5.2xlarge")
    assert verdict.status == DOES_NOT_FIT and not verdict.fits
    assert verdict.estimate is not None and verdict.estimate.peak_bytes > 1000 * GIB
    assert "ml.g5.2xlarge (1 x A10G 24 GiB) cannot hold this training" in verdict.message
    assert "21.6 GiB usable" in verdict.message
    # No single change suffices; together: QLoRA (LoRA over a 4-bit base) on 80 GiB GPUs.
    assert verdict.together
    settings = {change.setting: change.value for change in verdict.changes}
    assert "finetune_method lora" in settings["quantize_4bit"]
    assert settings["training_instance_type"].startswith(("ml.p4de.24xlarge", "ml.p5.48xlarge"))
    assert "quantize_4bit" in verdict.message and "training_instance_type" in verdict.message


def test_each_suggested_change_does_fit() -> None:
    shape = catalogue_shape("hf://HuggingFaceTB/SmolLM2-1.7B-Instruct")
    assert shape is not None
    plan = Plan(shape, TrainingSetup(max_seq_length=1024, batch_size=4, lora_r=16))
    verdict = check(plan, "ml.g5.2xlarge")
    assert verdict.status == DOES_NOT_FIT and not verdict.together
    settings = [change.setting for change in verdict.changes]
    assert settings[0] == "gradient_checkpointing"
    assert "training_instance_type" in settings
    assert check(plan.with_setup(gradient_checkpointing=True), "ml.g5.2xlarge").fits
    assert all(change.peak_bytes <= verdict.budget_bytes for change in verdict.changes[:1])


def test_recommend_picks_the_smallest_type_that_fits() -> None:
    small = catalogue_shape("smollm2-135m-instruct")
    assert small is not None
    chosen = recommend(Plan(small, TrainingSetup()))
    assert chosen is not None and chosen.instance_type == "ml.g5.xlarge"
    # An 8B LoRA keeps the base in fp32 (29.9 GiB) and its frozen linears in bf16 too: more
    # than an L40S holds, and more than ml.g6e.xlarge's 32 GiB of host memory can load.
    big = catalogue_shape("meta-llama/Llama-3.1-8B")
    assert big is not None
    lora = Plan(big, TrainingSetup(gradient_checkpointing=True, batch_size=1))
    chosen = recommend(lora)
    assert chosen is not None and chosen.instance_type == "ml.p4de.24xlarge"
    refused = check(lora, "ml.g6e.xlarge")
    assert refused.status == DOES_NOT_FIT
    assert "loading needs 29.9 GiB of host memory" in refused.message
    # QLoRA holds it on the smallest type.
    qlora = recommend(lora.with_setup(method="qlora"))
    assert qlora is not None and qlora.instance_type == "ml.g5.xlarge"


def test_cpu_and_unknown_instance_types_are_skipped_with_the_reason() -> None:
    plan = Plan(TINY, SETUP)
    local = check(plan, "ml.m5.xlarge")
    assert local.status == SKIPPED and "CPU instance type" in local.message
    assert check(plan, "ml.trn1.2xlarge").status == SKIPPED
    assert check(plan, "ml.g5.xlarge").status == FITS


def test_bad_setups_fail_naming_the_setting() -> None:
    with pytest.raises(PlanError, match="batch_size"):
        Plan(TINY, dataclasses.replace(SETUP, batch_size=0)).estimate()
    with pytest.raises(PlanError, match="qlora computes in bf16"):
        Plan(TINY, dataclasses.replace(SETUP, method="qlora")).estimate()
    with pytest.raises(PlanError, match="match none"):
        Plan(TINY, dataclasses.replace(SETUP, lora_target_modules="query_key_value")).estimate()


@pytest.mark.parametrize(
    ("stage", "peak_gib", "micro_batch", "accumulation"),
    [("dev", 18.7, 2, 2), ("prod", 18.8, 1, 4)],
)
def test_the_dev_and_prod_defaults_fit_their_gpu_under_enforce(
    stage: str, peak_gib: float, micro_batch: int, accumulation: int
) -> None:
    # Given the stage as it ships (loading it runs the synth check)
    config = load_stage_config(stage, {})
    # Then it enforces the check, and fits ml.g5.2xlarge's 21.6 GiB with the margin the docs
    # state, at an effective batch of 4 rows
    assert config.training_capacity_check == "enforce"
    verdict = config.training_capacity()
    assert verdict.fits and verdict.estimate is not None
    assert round(verdict.estimate.peak_bytes / GIB, 1) == peak_gib
    assert round(verdict.budget_bytes / GIB, 1) == 21.6
    training = config.training
    assert (training.per_device_batch_size, training.gradient_accumulation_steps) == (
        micro_batch,
        accumulation,
    )
    assert training.per_device_batch_size * training.gradient_accumulation_steps == 4


def test_a_stage_that_does_not_fit_fails_synth_naming_the_setting_to_change() -> None:
    # Given dev's effective batch as one micro-batch of 4 (26.4 GiB on a 21.6 GiB GPU)
    dev = load_stage_config("dev", {})
    one_batch = dataclasses.replace(
        dev.training, per_device_batch_size=4, gradient_accumulation_steps=1
    )
    # When it is loaded under enforce, synth fails naming the stage settings that fit
    with pytest.raises(ConfigError, match=r"training_instance_type ml\.g5\.2xlarge") as raised:
        dataclasses.replace(dev, training=one_batch)
    message = str(raised.value)
    assert "26.4 GiB per GPU estimated, 21.6 GiB usable" in message
    assert "gradient_checkpointing true -> 13.8 GiB" in message
    assert "per_device_batch_size 2 -> 18.7 GiB" in message
    assert "with gradient_accumulation_steps 2 for the same effective batch" in message
    # FSDP is a stage setting too: on the same GPU, more of them
    assert "sharding fsdp on ml.g5.48xlarge (8 x A10G 24 GiB) -> 21.0 GiB" in message
    assert "not settings of the stage config" not in message
    # Under warn the same config loads
    assert dataclasses.replace(dev, training=one_batch, training_capacity_check="warn")
    # The local stage names a CPU instance type: skipped, and an override does not fail.
    local = load_stage_config("local", {"base_model": "hf://meta-llama/Llama-3.1-70B"})
    assert local.training_capacity().status == SKIPPED


def test_the_stage_settings_the_planner_names_reach_the_trainer(tmp_path: Path) -> None:
    # Given prod's Train hyperparameters as the state machine passes them (strings)
    prod = load_stage_config("prod", {})
    training = dataclasses.replace(prod.training, gradient_checkpointing=True)
    hyperparameters = {"base_model": prod.base_model, **training.as_hyperparameters()}
    assert hyperparameters["gradient_checkpointing"] == "true"
    # When the trainer parses them as SageMaker hands them over (SM_HPS)
    parsed = parse_hyperparameters([], {"SM_HPS": json.dumps(hyperparameters)}, tmp_path)
    # Then it trains with the stage's micro-batch, accumulation and checkpointing
    assert (parsed.per_device_batch_size, parsed.gradient_accumulation_steps) == (1, 4)
    assert parsed.gradient_checkpointing is True and parsed.quantize_4bit is False
    # And the synth check plans exactly what the trainer parsed
    assert set(prod.training_capacity_settings().hyperparameters) == set(hyperparameters)


@pytest.mark.parametrize(
    ("base_model", "location"),
    [
        ("s3://models/base/", ("models", "base/config.json")),
        ("s3://models/base", ("models", "base/config.json")),
        ("s3://models", ("models", "config.json")),
        ("s3://models/champion/model.tar.gz", None),  # its config is inside the archive
        ("hf://HuggingFaceTB/SmolLM2-1.7B-Instruct", None),  # synth sizes these
    ],
)
def test_the_run_time_check_reads_only_an_s3_models_config(
    base_model: str, location: tuple[str, str] | None
) -> None:
    assert model_config_location(base_model) == location


def test_malformed_training_capacity_settings_name_the_field() -> None:
    settings = load_stage_config("dev", {}).training_capacity_settings()
    assert TrainingCapacitySettings.from_json(settings.to_json()) == settings
    bad = json.loads(settings.to_json())
    with pytest.raises(CapacitySettingsError, match="training_capacity_check must be"):
        TrainingCapacitySettings.from_json(json.dumps({**bad, "training_capacity_check": "on"}))
    with pytest.raises(CapacitySettingsError, match="must be an object of"):
        TrainingCapacitySettings.from_json(json.dumps({**bad, "instance": "ml.g5.xlarge"}))


def test_plan_command_prints_the_breakdown_and_the_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "plan",
        "--base-model",
        "hf://HuggingFaceTB/SmolLM2-1.7B-Instruct",
        "--method",
        "lora",
        "--max-seq-length",
        "1024",
        "--batch-size",
        "4",
        "--instance-type",
        "ml.g5.2xlarge",
    ]
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert "activations" in text and "logits" in text and "optimizer state" in text
    assert "any one of these fits:" in text and "gradient_checkpointing true" in text
    assert main([*argv, "--checkpointing", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["verdict"]["status"] == "fits"
    assert payload["setup"]["gradient_checkpointing"] is True
    names = [c["name"] for c in payload["estimate"]["components"]]
    assert names[0] == "weights" and "recomputed block" in names
    assert main(["plan", "--base-model", "hf://nobody/nothing"]) == 2
    assert "catalogue" in capsys.readouterr().err
    # A stage's Train settings, as synth checks them (dev fits: 2 rows x 2 accumulated).
    assert main(["plan", "--stage", "dev", "--json"]) == 0
    dev = json.loads(capsys.readouterr().out)
    assert dev["verdict"]["instance_type"] == "ml.g5.2xlarge"
    assert dev["verdict"]["status"] == "fits"
    assert dev["setup"]["max_seq_length"] == 1024 and dev["setup"]["lora_r"] == 16
    assert (dev["setup"]["batch_size"], dev["setup"]["gradient_accumulation_steps"]) == (2, 2)
    # Its effective batch as one micro-batch does not fit; flags override the stage's values.
    one_batch = ["--batch-size", "4", "--gradient-accumulation-steps", "1"]
    assert main(["plan", "--stage", "dev", *one_batch]) == 1
    assert "cannot hold this training" in capsys.readouterr().out
    assert main(["plan", "--stage", "dev", *one_batch, "--checkpointing"]) == 0
    assert "fits" in capsys.readouterr().out
