"""Training options: full fine-tuning, QLoRA's requirements and loading path, multi-GPU data
parallelism (two gloo processes on CPU through the real torchrun relaunch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from test_training_correctness import varied_records
from test_training_incremental import run_job, sm_env
from tiny_models import make_tiny_causal_lm

from tuneloop.models.loading import load_model_dir, read_model_metadata
from tuneloop.training import model_setup
from tuneloop.training.config import TrainConfig, TrainingError


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base"))


def test_full_fine_tuning_trains_every_weight_and_saves_the_whole_model(
    base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm_env(monkeypatch, tmp_path, varied_records())
    report = run_job(base_model, tmp_path, "--finetune_method", "full", "--learning_rate", "0.01")

    assert report["finetune_method"] == "full"
    assert report["trainable_parameters"] == report["total_parameters"] > 0
    assert report["adapter_sha256"] is None
    model_dir = tmp_path / "model"
    assert (model_dir / "config.json").is_file()
    assert not (model_dir / "adapter_config.json").exists()
    assert read_model_metadata(model_dir)["adapter"] is False
    saved = load_file(model_dir / "model.safetensors")
    original = load_file(base_model / "model.safetensors")
    # Every saved weight moved (the embeddings, norms and all projections trained).
    unchanged = [name for name in original if torch.equal(saved[name], original[name])]
    assert unchanged == []
    trained, _ = load_model_dir(model_dir)
    for name, tensor in trained.state_dict().items():
        if name in saved:
            torch.testing.assert_close(tensor, saved[name], msg=name)


def test_full_fine_tuning_resumes_exactly(
    base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_training_correctness import config, quiet

    from tuneloop.training.data import Dataset
    from tuneloop.training.loop import TrainingInterruptedError, train

    dataset = Dataset(varied_records(), sha256="0" * 64, files=["train.jsonl"])
    settings: dict[str, Any] = {"finetune_method": "full", "max_steps": 4}
    straight = train(config(base_model, tmp_path / "a", **settings), dataset, quiet)
    with pytest.raises(TrainingInterruptedError):
        train(config(base_model, tmp_path / "b", stop_after_steps=2, **settings), dataset, quiet)
    resumed = train(config(base_model, tmp_path / "b", **settings), dataset, quiet)
    assert resumed.report["resumed_from_step"] == 2
    assert resumed.report["losses"] == pytest.approx(straight.report["losses"], abs=1e-6)


def test_qlora_on_cpu_fails_before_loading_with_a_clear_reason(
    base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training_containers.train import main

    sm_env(monkeypatch, tmp_path, varied_records())
    code = main(["--base_model", str(base_model), "--quantize_4bit", "true"])
    assert code == 1
    reason = (tmp_path / "output/failure").read_text()
    assert "quantize_4bit" in reason and "needs a CUDA GPU" in reason


def test_qlora_without_bitsandbytes_names_the_missing_package(
    base_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_setup.importlib.util, "find_spec", lambda name: None)
    config = TrainConfig(base_model=str(base_model), quantize_4bit=True).validate()
    with pytest.raises(TrainingError, match="needs the bitsandbytes package"):
        model_setup.check_quantization_support(config, torch.device("cuda", 0))


def test_qlora_loads_the_base_in_4bit_nf4_and_prepares_it_for_training(
    base_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loading path, with the GPU-only pieces recorded instead of run (no CUDA here)."""
    import peft
    import transformers

    calls: dict[str, Any] = {}

    def from_pretrained(path: Path, **kwargs: Any) -> str:
        calls["load"] = (Path(path), kwargs)
        return "4-bit model"

    def prepare(model: str, *, use_gradient_checkpointing: bool) -> str:
        calls["prepare"] = (model, use_gradient_checkpointing)
        return "prepared model"

    monkeypatch.setattr(model_setup, "check_quantization_support", lambda config, device: None)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", prepare)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    config = TrainConfig(
        base_model=str(base_model), quantize_4bit=True, gradient_checkpointing=True
    ).validate()

    model, tokenizer = model_setup.load_base(config, torch.device("cuda", 0))

    assert model == "prepared model" and tokenizer is not None
    path, kwargs = calls["load"]
    assert path == base_model
    quantization = kwargs["quantization_config"]
    assert isinstance(quantization, transformers.BitsAndBytesConfig)
    assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"
    assert quantization.bnb_4bit_compute_dtype == torch.bfloat16
    assert kwargs["device_map"] == {"": 0}
    assert calls["prepare"] == ("4-bit model", True)


def test_empty_replay_file_of_a_first_run_trains_on_the_new_records_only(
    base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PrepareDataset writes an empty replay/replay.jsonl when there is no champion yet."""
    sm_env(monkeypatch, tmp_path, varied_records()[:12])
    replay = tmp_path / "input/data/replay"
    replay.mkdir(parents=True)
    replay.joinpath("replay.jsonl").write_bytes(b"")
    report = run_job(base_model, tmp_path, "--replay_fraction", "0.5", "--max_steps", "1")
    assert report["records"] == 12
    assert [entry["channel"] for entry in report["data_manifest"]] == ["train"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"finetune_method": "partial"}, "finetune_method must be lora or full"),
        ({"finetune_method": "full", "quantize_4bit": True}, "needs finetune_method lora"),
        ({"finetune_method": "full", "init_adapter": "s3://b/m.tar.gz"}, "init_adapter"),
    ],
)
def test_incompatible_options_fail_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        TrainConfig(**overrides).validate()


def test_two_process_data_parallel_run_matches_one_process_of_the_same_batch(
    base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SM_NUM_GPUS=2 relaunches the entry point under torchrun (gloo on CPU). Each process
    computes half of each step's micro-batches; summed gradients give the same losses as one
    process accumulating all of them. Only rank 0 writes outputs."""
    common = ["--learning_rate", "0.01", "--per_device_batch_size", "2", "--max_seq_length", "64"]
    single_root, parallel_root = tmp_path / "single", tmp_path / "parallel"
    sm_env(monkeypatch, single_root, varied_records())
    monkeypatch.delenv("SM_NUM_GPUS", raising=False)
    single = run_job(base_model, single_root, *common, "--gradient_accumulation_steps", "4")

    sm_env(monkeypatch, parallel_root, varied_records())
    monkeypatch.setenv("SM_NUM_GPUS", "2")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    parallel = run_job(base_model, parallel_root, *common, "--gradient_accumulation_steps", "2")

    assert parallel["processes"] == 2
    assert parallel["examples_seen"] == single["examples_seen"]
    assert parallel["tokens"] == single["tokens"]
    assert parallel["losses"] == pytest.approx(single["losses"], abs=1e-5)
    single_weights = load_file(single_root / "model/adapter_model.safetensors")
    parallel_weights = load_file(parallel_root / "model/adapter_model.safetensors")
    assert parallel_weights.keys() == single_weights.keys()
    for name, tensor in parallel_weights.items():
        # Adam divides by the gradient's magnitude, so summation-order noise in tiny
        # gradients shows more in the weights than in the losses.
        torch.testing.assert_close(tensor, single_weights[name], rtol=1e-3, atol=1e-4, msg=name)
    metadata = json.loads((parallel_root / "model/tuneloop_model.json").read_text())
    assert metadata["adapter"] is True
    assert not (parallel_root / "output/failure").exists()


def test_bf16_frozen_weights_give_the_same_losses_as_plain_autocast(
    base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storing frozen linear weights in bf16 while training is a pure speed-up: autocast
    rounds them the same way. Afterwards the model holds its fp32 weights again."""
    from contextlib import nullcontext

    from test_training_correctness import config, quiet

    from tuneloop.training import loop
    from tuneloop.training.data import Dataset

    dataset = Dataset(varied_records(), sha256="0" * 64, files=["train.jsonl"])
    cast = loop.train(config(base_model, tmp_path / "a", precision="bf16"), dataset, quiet)
    monkeypatch.setattr(loop, "frozen_linear_weights_in", lambda model, dtype: nullcontext(0))
    plain = loop.train(config(base_model, tmp_path / "b", precision="bf16"), dataset, quiet)

    assert cast.report["precision"] == "bf16"
    # Every frozen projection of the 2-layer Llama (7 per layer) held bf16 weights.
    assert cast.report["frozen_weights_in_bf16"] == 14
    assert plain.report["frozen_weights_in_bf16"] == 0
    assert cast.report["losses"] == pytest.approx(plain.report["losses"], abs=1e-6)
    dtypes = {p.dtype for p in cast.model.parameters()}
    assert dtypes == {torch.float32}


def test_training_doc_lists_every_hyperparameter_with_its_default() -> None:
    import dataclasses

    doc = (Path(__file__).resolve().parents[2] / "docs/training.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in doc.splitlines() if "| `" in line}
    for field in dataclasses.fields(TrainConfig):
        assert field.name in rows, field.name
        default = field.default
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert f"`{shown}`" in rows[field.name] or default == "", field.name


def test_relaunching_process_passes_sigterm_on_to_the_workers() -> None:
    """A spot reclaim signals the process SageMaker started; it must reach the ranks (which
    checkpoint) instead of killing the launcher."""
    import os
    import signal
    import subprocess
    import sys

    from tuneloop.training.distributed import _forward_sigterm

    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert worker.stdout is not None and worker.stdout.readline() == b"ready\n"
    before = signal.getsignal(signal.SIGTERM)
    restore = _forward_sigterm(worker)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert worker.wait(timeout=30) == 7
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) == before
