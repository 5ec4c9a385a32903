"""The trainer computes what it claims: accumulation, packing and checkpointing change speed
or memory, never the loss (tiny Llama, fp32 on CPU)."""

from __future__ import annotations

import dataclasses
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_models import make_tiny_causal_lm, make_tiny_tokenizer

from tuneloop.models.loading import load_model_dir
from tuneloop.training.batching import collate, collate_packed, pack, step_plan
from tuneloop.training.config import TrainConfig
from tuneloop.training.data import IGNORE_INDEX, Dataset, Example, encode_record
from tuneloop.training.loop import _loss_sum, train


def varied_records() -> list[dict[str, Any]]:
    """Records of clearly different lengths, text and chat, so padding and packing matter."""
    records: list[dict[str, Any]] = []
    for index in range(12):
        records.append({"text": f"record {index}: " + "lorem ipsum " * (1 + index % 5)})
        records.append(
            {
                "messages": [
                    {"role": "user", "content": f"question {index}" + "?" * (index % 4)},
                    {"role": "assistant", "content": "answer " * (1 + index % 3)},
                ]
            }
        )
    return records


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset(varied_records(), sha256="0" * 64, files=["train.jsonl"])


def config(base_model: Path, tmp_path: Path, **overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {
        "base_model": str(base_model),
        "max_steps": 3,
        "learning_rate": 0.01,
        "max_seq_length": 96,
        "per_device_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "precision": "fp32",
        "num_threads": 1,
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "seed": 3,
    }
    settings.update(overrides)
    return TrainConfig(**settings).validate()


def quiet(_: str) -> None:
    pass


def lora_weights(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_close_runs(first: Any, second: Any, tolerance: float) -> None:
    assert first.report["losses"] == pytest.approx(second.report["losses"], rel=tolerance)
    weights_a, weights_b = lora_weights(first.model), lora_weights(second.model)
    assert weights_a.keys() == weights_b.keys()
    for name, tensor in weights_a.items():
        torch.testing.assert_close(tensor, weights_b[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("packing", [False, True])
def test_accumulating_8_micro_batches_of_1_equals_one_batch_of_8(
    base_model: Path, dataset: Dataset, tmp_path: Path, packing: bool
) -> None:
    big = train(config(base_model, tmp_path, packing=packing), dataset, quiet)
    accumulated = train(
        config(
            base_model,
            tmp_path,
            packing=packing,
            per_device_batch_size=1,
            gradient_accumulation_steps=8,
        ),
        dataset,
        quiet,
    )
    assert accumulated.report["micro_batches"] == 24 and big.report["micro_batches"] == 3
    assert_close_runs(big, accumulated, 1e-5)
    # The loss moved: equal runs are not equal because nothing was trained.
    assert big.report["losses"][0] != big.report["losses"][-1]


def test_packed_training_matches_padded_training(
    base_model: Path, dataset: Dataset, tmp_path: Path
) -> None:
    # Rows of 256 tokens hold several of these examples (each is 20-90 tokens).
    padded = train(config(base_model, tmp_path, packing=False, max_seq_length=256), dataset, quiet)
    packed = train(config(base_model, tmp_path, packing=True, max_seq_length=256), dataset, quiet)
    assert packed.report["losses"] == pytest.approx(padded.report["losses"], abs=1e-4)
    assert packed.report["tokens"] == padded.report["tokens"]
    assert packed.report["padding_fraction"] < padded.report["padding_fraction"]


def test_gradient_checkpointing_changes_memory_not_losses(
    base_model: Path, dataset: Dataset, tmp_path: Path
) -> None:
    plain = train(config(base_model, tmp_path), dataset, quiet)
    checkpointed = train(config(base_model, tmp_path, gradient_checkpointing=True), dataset, quiet)
    assert_close_runs(plain, checkpointed, 1e-5)


def test_same_seed_gives_identical_losses_with_dropout(
    base_model: Path, dataset: Dataset, tmp_path: Path
) -> None:
    runs = [
        train(config(base_model, tmp_path, lora_dropout=0.2, seed=seed), dataset, quiet)
        for seed in (5, 5, 6)
    ]
    assert runs[0].report["losses"] == runs[1].report["losses"]
    assert runs[0].report["losses"] != runs[2].report["losses"]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(base_model: Path, attention: str) -> None:
    model, tokenizer = load_model_dir(base_model)
    model.set_attn_implementation(attention)
    first = encode_record({"text": "the first example, long enough"}, tokenizer, 64)
    other_first = encode_record({"text": "a different one of equal size!"}, tokenizer, 64)
    assert len(first.input_ids) == len(other_first.input_ids)
    second = encode_record({"text": "the example whose loss we watch"}, tokenizer, 64)

    def unlabelled(example: Example) -> Example:
        return Example(example.input_ids, [IGNORE_INDEX] * len(example.labels))

    def second_loss(neighbour: Example) -> float:
        batch = collate_packed([[unlabelled(neighbour), second]], pad_id=0)
        with torch.no_grad():
            return float(_loss_sum(model, None, batch.tensors))

    alone = collate([second], pad_id=0)
    with torch.no_grad():
        expected = float(_loss_sum(model, None, alone.tensors))
    assert second_loss(first) == pytest.approx(expected, abs=1e-4)
    assert second_loss(other_first) == pytest.approx(expected, abs=1e-4)


def test_packing_respects_capacity_and_keeps_every_token() -> None:
    tokenizer = make_tiny_tokenizer()
    examples = [encode_record(r, tokenizer, 48) for r in varied_records()]
    rows = pack(examples, 48)
    assert all(sum(len(e.input_ids) for e in row) <= 48 for row in rows)
    assert sorted(len(e.input_ids) for row in rows for e in row) == sorted(
        len(e.input_ids) for e in examples
    )
    assert len(rows) < len(examples)
    batch = collate_packed(rows[:2], pad_id=0)
    positions = batch.tensors["position_ids"]
    assert int((positions == 0).sum()) >= sum(len(row) for row in rows[:2])
    assert batch.tokens == sum(len(e.input_ids) for row in rows[:2] for e in row)
    # One label per example is dropped: its first token, which nothing may predict.
    labelled = sum(
        sum(label != IGNORE_INDEX for label in e.labels[1:]) for row in rows[:2] for e in row
    )
    assert batch.label_count == labelled


def test_step_plan_is_deterministic_and_each_step_has_its_size() -> None:
    lengths = [5, 50, 7, 60, 9, 70, 11, 80, 13, 90] * 4

    def first_steps(*, group_by_length: bool) -> list[list[int]]:
        return list(islice(step_plan(lengths, 8, 1, group_by_length=group_by_length), 20))

    plan, again = first_steps(group_by_length=True), first_steps(group_by_length=True)
    assert plan == again and all(len(step) == 8 for step in plan)
    ungrouped = first_steps(group_by_length=False)

    def spread(steps: list[list[int]]) -> float:
        return sum(max(lengths[i] for i in s) - min(lengths[i] for i in s) for s in steps)

    # Grouped steps hold examples of similar length, hence less padding.
    assert spread(plan) < spread(ungrouped) / 2


def test_bool_hyperparameters_parse_sagemaker_spellings(tmp_path: Path) -> None:
    from tuneloop.training.config import TrainingError, parse_hyperparameters

    parsed = parse_hyperparameters(
        ["--packing", "False", "--gradient_checkpointing", "1"], {}, tmp_path
    )
    assert (parsed.packing, parsed.gradient_checkpointing) == (False, True)
    with pytest.raises(TrainingError, match="packing"):
        parse_hyperparameters(["--packing", "maybe"], {}, tmp_path)
    assert dataclasses.replace(parsed, packing=True).packing is True
