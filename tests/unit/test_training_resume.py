"""Spot resume: a run interrupted after k steps and resumed from its checkpoint produces the
same losses, step for step, as a run never interrupted (fp32 on CPU, dropout on, so the RNG
state matters too)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from test_training_correctness import config, quiet, varied_records
from tiny_models import make_tiny_causal_lm

from training_containers.train import main
from tuneloop.training.checkpoint import CHECKPOINT_FILE
from tuneloop.training.data import Dataset
from tuneloop.training.loop import TrainingInterruptedError, train

STEPS = 6


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset(varied_records(), sha256="1" * 64, files=["train.jsonl"])


def settings(**overrides: Any) -> dict[str, Any]:
    # Small batches so 6 steps cross an epoch boundary of the 24 records.
    base = {
        "max_steps": STEPS,
        "per_device_batch_size": 3,
        "gradient_accumulation_steps": 2,
        "lora_dropout": 0.2,
        "warmup_steps": 2,
    }
    return base | overrides


@pytest.fixture(scope="module")
def uninterrupted(
    base_model: Path, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> list[float]:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    return list(train(config(base_model, tmp, **settings()), dataset, quiet).report["losses"])


@pytest.mark.parametrize("stop_after", [1, 4])
def test_resumed_run_repeats_the_uninterrupted_losses(
    base_model: Path,
    dataset: Dataset,
    tmp_path: Path,
    uninterrupted: list[float],
    stop_after: int,
) -> None:
    with pytest.raises(TrainingInterruptedError, match=f"after step {stop_after} of {STEPS}"):
        train(config(base_model, tmp_path, **settings(stop_after_steps=stop_after)), dataset, quiet)
    assert (tmp_path / "checkpoints" / CHECKPOINT_FILE).is_file()

    resumed = train(config(base_model, tmp_path, **settings()), dataset, quiet).report
    assert resumed["resumed_from_step"] == stop_after
    assert len(resumed["losses"]) == STEPS
    assert resumed["losses"] == pytest.approx(uninterrupted, abs=1e-6)
    assert resumed["examples_seen"] == STEPS * 6


def test_sigterm_checkpoints_after_the_current_step_and_resumes(
    base_model: Path, dataset: Dataset, tmp_path: Path, uninterrupted: list[float]
) -> None:
    def interrupt_at_step_3(line: str) -> None:
        if line.startswith("step 3/"):
            os.kill(os.getpid(), signal.SIGTERM)  # what a spot reclaim sends the container

    with pytest.raises(TrainingInterruptedError, match="after step 3 of"):
        train(config(base_model, tmp_path, **settings()), dataset, interrupt_at_step_3)
    resumed = train(config(base_model, tmp_path, **settings()), dataset, quiet).report
    assert resumed["resumed_from_step"] == 3
    assert resumed["losses"] == pytest.approx(uninterrupted, abs=1e-6)


def test_checkpoint_of_another_config_is_not_resumed(
    base_model: Path, dataset: Dataset, tmp_path: Path
) -> None:
    with pytest.raises(TrainingInterruptedError):
        train(config(base_model, tmp_path, **settings(stop_after_steps=2)), dataset, quiet)
    other = train(config(base_model, tmp_path, **settings(learning_rate=0.02)), dataset, quiet)
    assert other.report["resumed_from_step"] == 0


def test_job_exits_1_when_interrupted_and_finishes_on_restart(
    base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = tmp_path / "train"
    channel.mkdir()
    channel.joinpath("train.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in varied_records()), encoding="utf-8"
    )
    for name, path in [
        ("SM_CHANNEL_TRAIN", channel),
        ("SM_MODEL_DIR", tmp_path / "model"),
        ("SM_OUTPUT_DATA_DIR", tmp_path / "output/data"),
        ("SM_OUTPUT_DIR", tmp_path / "output"),
        ("SM_INPUT_CONFIG_DIR", tmp_path / "config"),
    ]:
        monkeypatch.setenv(name, str(path))
    monkeypatch.delenv("SM_HPS", raising=False)
    args = [
        "--base_model",
        str(base_model),
        "--max_steps",
        "3",
        "--checkpoint_dir",
        str(tmp_path / "checkpoints"),
        "--precision",
        "fp32",
    ]
    assert main([*args, "--stop_after_steps", "2"]) == 1
    assert "resumable checkpoint" in (tmp_path / "output/failure").read_text()
    assert not (tmp_path / "model/tuneloop_model.json").exists()

    assert main(args) == 0
    report = json.loads((tmp_path / "output/data/training_report.json").read_text())
    assert report["resumed_from_step"] == 2 and report["steps"] == 3
