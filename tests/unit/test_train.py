"""The Train entry point (training_containers/train.py) under the container contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tiny_models import make_tiny_causal_lm, make_tiny_tokenizer, set_training_job_env

from training_containers.train import main
from tuneloop.training.config import TrainingError, parse_hyperparameters
from tuneloop.training.data import IGNORE_INDEX, encode_record

REPO = Path(__file__).resolve().parents[2]
CHAT = {
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "see you"},
    ]
}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base"))


@pytest.fixture()
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SM_* variables pointing at tmp_path; returns it."""
    set_training_job_env(monkeypatch, tmp_path)
    (tmp_path / "input/data/train").mkdir(parents=True)
    return tmp_path


def write_records(job: Path, records: list[dict[str, Any]], name: str = "train.jsonl") -> None:
    lines = "".join(json.dumps(record) + "\n" for record in records)
    (job / "input/data/train" / name).write_text(lines, encoding="utf-8")


def train(base_model: Path, *extra: str) -> int:
    return main(
        [
            "--base_model",
            str(base_model),
            "--max_steps",
            "4",
            "--per_device_batch_size",
            "2",
            "--max_seq_length",
            "64",
            *extra,
        ]
    )


def report(job: Path) -> dict[str, Any]:
    return json.loads((job / "output/data/training_report.json").read_text())


REPETITIVE = [{"text": "abcabcabc abcabcabc abcabcabc"}] * 4 + [CHAT] * 4


def test_writes_adapter_tokenizer_metadata_code_and_report(
    base_model: Path, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_records(job, REPETITIVE)
    assert train(base_model, "--model_version", "v-test") == 0

    model_dir = job / "model"
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "code/inference.py",
        "code/tuneloop/serving/engine.py",
    ):
        assert (model_dir / name).is_file(), name
    # Nothing for the inference container to pip-install at endpoint start
    assert not list((model_dir / "code").glob("requirements*.txt"))
    assert not (model_dir / "code/tuneloop/local").exists()
    meta = json.loads((model_dir / "tuneloop_model.json").read_text())
    assert meta["adapter"] is True
    assert meta["base_model"] == str(base_model.resolve())
    assert meta["model_version"] == "v-test"

    data = report(job)
    assert data["steps"] == 4 and len(data["losses"]) == 4
    assert data["final_loss"] == data["losses"][-1]
    assert data["tokens"] > 0 and data["tokens_per_second"] > 0
    assert data["config"]["per_device_batch_size"] == 2
    assert len(data["data_sha256"]) == 64
    out = capsys.readouterr().out
    assert "step 1/4 loss=" in out
    assert out.count("train_loss=") == 4
    assert not (job / "output/failure").exists()


def test_loss_decreases_on_repetitive_data(base_model: Path, job: Path) -> None:
    write_records(job, REPETITIVE)
    assert (
        main(
            [
                "--base_model",
                str(base_model),
                "--max_steps",
                "12",
                "--learning_rate",
                "0.05",
                "--lora_r",
                "16",
                "--lora_alpha",
                "32",
                "--per_device_batch_size",
                "4",
                "--max_seq_length",
                "64",
            ]
        )
        == 0
    )
    losses = report(job)["losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 * 0.9


def test_same_seed_same_losses_other_seed_differs(base_model: Path, job: Path) -> None:
    write_records(job, REPETITIVE)
    runs = []
    for seed in ("7", "7", "8"):
        assert train(base_model, "--seed", seed, "--lora_dropout", "0.1") == 0
        runs.append(report(job)["losses"])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_chat_labels_cover_only_assistant_turns() -> None:
    tokenizer = make_tiny_tokenizer()
    example = encode_record(CHAT, tokenizer, max_length=512)
    labelled = [
        t
        for t, label in zip(example.input_ids, example.labels, strict=True)
        if label != IGNORE_INDEX
    ]
    assert all(
        label in (t, IGNORE_INDEX)
        for t, label in zip(example.input_ids, example.labels, strict=True)
    )
    assert tokenizer.decode(labelled) == "hello there<|im_end|>\nsee you<|im_end|>\n"


def test_chat_labels_without_chat_template_use_fallback_format() -> None:
    tokenizer = make_tiny_tokenizer(chat_template=False)
    example = encode_record(CHAT, tokenizer, max_length=512)
    labelled = [
        t
        for t, label in zip(example.input_ids, example.labels, strict=True)
        if label != IGNORE_INDEX
    ]
    assert "### User:\nhi" in tokenizer.decode(example.input_ids)
    assert tokenizer.decode(labelled) == "hello there<|im_end|>\n\nsee you<|im_end|>\n\n"


def test_text_labels_every_token_and_end_with_eos() -> None:
    tokenizer = make_tiny_tokenizer()
    example = encode_record({"text": "abc"}, tokenizer, max_length=512)
    assert example.labels == example.input_ids
    assert example.input_ids[-1] == tokenizer.eos_token_id
    assert len(encode_record({"text": "abcdefgh" * 4}, tokenizer, max_length=8).input_ids) == 8


def test_unknown_base_model_writes_failure_and_returns_1(
    base_model: Path, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_records(job, REPETITIVE)
    assert train(Path("no-such-model")) == 1
    failure = (job / "output/failure").read_text()
    assert "no-such-model" in failure and "\n" not in failure.strip()
    assert "no-such-model" in capsys.readouterr().err
    assert not (job / "model/tuneloop_model.json").exists()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "no .jsonl files"),
        ({"train.jsonl": "\n\n"}, "no records"),
        ({"train.jsonl": "{not json\n"}, "train.jsonl:1"),
        ({"train.jsonl": '{"text": ""}\n'}, "non-empty 'text' or 'messages'"),
    ],
)
def test_empty_or_unreadable_channel_fails_clearly(
    base_model: Path, job: Path, files: dict[str, str], expected: str
) -> None:
    for name, content in files.items():
        (job / "input/data/train" / name).write_text(content)
    assert train(base_model) == 1
    assert expected in (job / "output/failure").read_text()


def test_bad_hyperparameters_fail_with_their_name(base_model: Path, job: Path) -> None:
    write_records(job, REPETITIVE)
    assert train(base_model, "--max_step", "3") == 1
    assert "--max_step" in (job / "output/failure").read_text()
    assert train(base_model, "--lora_r", "zero") == 1
    assert "lora_r" in (job / "output/failure").read_text()


def test_hyperparameter_sources_merge_in_sagemaker_order(tmp_path: Path) -> None:
    (tmp_path / "hyperparameters.json").write_text(
        json.dumps(
            {"max_steps": "3", "base_model": '"from-file"', "lora_r": "4", "sagemaker_program": "x"}
        )
    )
    environ = {"SM_HPS": json.dumps({"lora_r": 2, "seed": 5})}
    config = parse_hyperparameters(
        ["--seed", "9", "--sagemaker_region", "eu-west-1"], environ, tmp_path
    )
    assert (config.base_model, config.max_steps, config.lora_r, config.seed) == (
        "from-file",
        3,
        2,
        9,
    )
    with pytest.raises(TrainingError, match="learning_rate"):
        parse_hyperparameters(["--learning_rate", "-1"], {}, tmp_path)


def test_script_help_lists_hyperparameters() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "training_containers/train.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    for name in (
        "--base_model",
        "--max_steps",
        "--learning_rate",
        "--lora_r",
        "--lora_alpha",
        "--lora_dropout",
        "--max_seq_length",
        "--per_device_batch_size",
        "--seed",
    ):
        assert name in result.stdout
