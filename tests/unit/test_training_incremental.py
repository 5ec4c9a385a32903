"""Incremental training (``init_adapter``), replay of earlier data, and the run's outputs."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from test_training_correctness import quiet, varied_records
from tiny_models import make_tiny_causal_lm, set_training_job_env

from training_containers.train import main
from tuneloop.models.loading import load_model_dir
from tuneloop.training.adapters import adapter_digest
from tuneloop.training.batching import collate
from tuneloop.training.config import TrainConfig, TrainingError
from tuneloop.training.data import Dataset, encode_record, mix_replay, read_channel
from tuneloop.training.loop import _loss_sum, train

RECORD = {
    "messages": [
        {"role": "user", "content": "What is the refund window?"},
        {"role": "assistant", "content": "Thirty days from delivery."},
    ]
}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base"))


def sm_env(monkeypatch: pytest.MonkeyPatch, root: Path, records: list[dict[str, Any]]) -> Path:
    channel = root / "input/data/train"
    channel.mkdir(parents=True)
    channel.joinpath("train.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
    )
    set_training_job_env(monkeypatch, root, replay=True, cache=False, offline=False)
    return root


def run_job(base_model: Path, root: Path, *extra: str) -> dict[str, Any]:
    args = ["--base_model", str(base_model), "--max_steps", "6", "--precision", "fp32"]
    args += ["--checkpoint_dir", str(root / "checkpoints"), *extra]
    assert main(args) == 0, (root / "output/failure").read_text()
    report: dict[str, Any] = json.loads((root / "output/data/training_report.json").read_text())
    return report


@pytest.fixture(scope="module")
def champion(
    base_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """A trained adapter (the production model of the next run), with its report."""
    root = tmp_path_factory.mktemp("champion")
    with pytest.MonkeyPatch.context() as monkeypatch:
        sm_env(monkeypatch, root, [RECORD] * 4)
        report = run_job(base_model, root, "--learning_rate", "0.05", "--lora_r", "4")
    return root / "model", report


def eval_loss(model_dir: Path) -> float:
    """Mean loss per label token of RECORD under the model saved in ``model_dir``."""
    model, tokenizer = load_model_dir(model_dir)
    batch = collate([encode_record(RECORD, tokenizer, 256)], pad_id=0)
    with torch.no_grad():
        return float(_loss_sum(model, None, batch.tensors)) / batch.label_count


def continue_config(base_model: Path, tmp_path: Path, init_adapter: str) -> TrainConfig:
    return TrainConfig(
        base_model=str(base_model),
        init_adapter=init_adapter,
        max_steps=2,
        learning_rate=0.05,
        precision="fp32",
        num_threads=1,
        checkpoint_dir=str(tmp_path / "checkpoints"),
    ).validate()


def test_continued_run_starts_from_the_loaded_adapter_weights(
    base_model: Path, champion: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    model_dir, _ = champion
    saved = adapter_digest(load_file(model_dir / "adapter_model.safetensors"))
    dataset = Dataset([RECORD] * 4, sha256="2" * 64, files=["train.jsonl"])

    result = train(continue_config(base_model, tmp_path, str(model_dir)), dataset, quiet)
    report = result.report
    assert report["init_adapter"] == {"source": str(model_dir), "adapter_sha256": saved}
    # The first step's loss is computed with the loaded weights: it is the champion's loss.
    assert report["losses"][0] == pytest.approx(eval_loss(model_dir), abs=1e-4)
    assert report["losses"][0] < eval_loss(base_model) - 0.5  # and not the base model's
    # The loaded weights are the ones trained: they moved, with the champion's LoRA rank.
    assert report["adapter_sha256"] != saved
    assert report["trainable_parameters"] == sum(
        t.numel() for t in load_file(model_dir / "adapter_model.safetensors").values()
    )


def test_init_adapter_accepts_a_model_tar_gz(
    base_model: Path, champion: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    model_dir, _ = champion
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=path.name)
    dataset = Dataset([RECORD] * 4, sha256="2" * 64, files=["train.jsonl"])
    report = train(continue_config(base_model, tmp_path, str(archive)), dataset, quiet).report
    saved = adapter_digest(load_file(model_dir / "adapter_model.safetensors"))
    assert report["init_adapter"]["adapter_sha256"] == saved


def test_init_adapter_errors_name_the_problem(
    base_model: Path, champion: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    dataset = Dataset([RECORD] * 4, sha256="2" * 64, files=["train.jsonl"])
    with pytest.raises(TrainingError, match=r"init_adapter .*no-such-adapter"):
        train(continue_config(base_model, tmp_path, str(tmp_path / "no-such-adapter")), dataset)
    with pytest.raises(TrainingError, match="not a TuneLoop adapter"):
        train(continue_config(base_model, tmp_path, str(base_model)), dataset)
    other_base = make_tiny_causal_lm(tmp_path / "other-base", seed=1)
    with pytest.raises(TrainingError, match="trained over base model"):
        train(continue_config(other_base, tmp_path, str(champion[0])), dataset)


def test_replay_sample_is_seeded_sized_and_recorded(tmp_path: Path) -> None:
    new = Dataset([{"text": f"new {i}"} for i in range(30)], "a" * 64, ["n.jsonl"], [{"n": 1}])
    old = Dataset([{"text": f"old {i}"} for i in range(100)], "b" * 64, ["o.jsonl"], [{"o": 1}])
    mixed = mix_replay(new, old, 0.25, seed=1)
    assert len(mixed.records) == 40  # 10 replayed make up a quarter of 40
    assert mixed.records[:30] == new.records
    assert all(r["text"].startswith("old ") for r in mixed.records[30:])
    assert mix_replay(new, old, 0.25, seed=1).records == mixed.records
    assert mix_replay(new, old, 0.25, seed=2).records != mixed.records
    assert mixed.manifest_sha256() != new.manifest_sha256()
    assert mixed.manifest[-1]["sampled_records"] == 10
    small = Dataset([{"text": "old"}], "c" * 64, ["s.jsonl"], [])
    assert len(mix_replay(new, small, 0.5, seed=1).records) == 31  # capped at what exists
    assert mix_replay(new, old, 0.0, seed=1) is new


def test_job_mixes_replay_channel_and_writes_curve_and_manifest(
    base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = sm_env(monkeypatch, tmp_path, varied_records()[:12])
    replay = root / "input/data/replay"
    replay.mkdir(parents=True)
    replay.joinpath("earlier.jsonl").write_text(
        "".join(json.dumps({"text": f"earlier record {i}"}) + "\n" for i in range(20))
    )
    report = run_job(base_model, root, "--replay_fraction", "0.25")

    assert report["records"] == 16  # 12 new + 4 replayed
    manifest = report["data_manifest"]
    train_file = root / "input/data/train/train.jsonl"
    assert manifest[0] == {
        "channel": "train",
        "file": "train.jsonl",
        "sha256": hashlib.sha256(train_file.read_bytes()).hexdigest(),
        "records": 12,
    }
    assert manifest[1]["sampled_records"] == 4
    assert manifest[1]["replay_of"][0]["file"] == "earlier.jsonl"
    assert len(report["data_manifest_sha256"]) == 64
    assert report["tokens_seen"] > 0 and report["peak_rss_mb"] > 10
    curve = root / "output/data" / report["loss_curve"]
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and curve.stat().st_size > 5_000
    meta = json.loads((root / "model/tuneloop_model.json").read_text())
    assert meta["data_manifest_sha256"] == report["data_manifest_sha256"]

    no_replay = read_channel(root / "input/data/train")
    assert no_replay.manifest_sha256() != report["data_manifest_sha256"]
