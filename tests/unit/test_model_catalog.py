"""Model references (tuneloop.models.catalog) and model folders (tuneloop.models.loading)."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
from moto import mock_aws
from tiny_models import make_tiny_causal_lm

from tuneloop.models import catalog
from tuneloop.models.catalog import DEMO_MODEL, resolve_model
from tuneloop.models.loading import load_model_dir, write_model_metadata


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNELOOP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(catalog, "_s3_client", None)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "model")


def test_local_folder_resolves_to_itself(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model(str(tiny)) == tiny.resolve()
    assert resolve_model(f"file://{tiny}") == tiny.resolve()
    monkeypatch.chdir(tiny.parent)
    assert resolve_model("model") == tiny.resolve()


@pytest.mark.parametrize("ref", ["no-such-model", "./missing/folder", "gs://bucket/model", ""])
def test_unknown_reference_raises_value_error_naming_it(ref: str) -> None:
    with pytest.raises(ValueError, match=repr(ref).replace(".", r"\.")):
        resolve_model(ref)


def test_hub_reference_refused_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELOOP_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"hf://org/model.*downloads are off"):
        resolve_model("hf://org/model")
    monkeypatch.delenv("TUNELOOP_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")  # the local platform
    assert catalog.is_offline()


@pytest.fixture()
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="models")
        yield client


def test_s3_prefix_is_downloaded_once_and_cached(
    tiny: Path, s3_bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for file in tiny.iterdir():
        s3_bucket.upload_file(str(file), "models", f"base/v1/{file.name}")
    first = resolve_model("s3://models/base/v1")
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in tiny.iterdir())
    assert "downloading s3://models/base/v1" in capsys.readouterr().out
    assert resolve_model("s3://models/base/v1") == first
    assert "using cached model" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no objects"):
        resolve_model("s3://models/absent")


def test_s3_model_tarball_is_extracted(tiny: Path, s3_bucket: Any) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for file in tiny.iterdir():
            tar.add(file, arcname=file.name)
    s3_bucket.put_object(
        Bucket="models",
        Key="jobs/x/output/model.tar.gz",
        Body=buffer.getvalue(),
    )
    folder = resolve_model("s3://models/jobs/x/output/model.tar.gz")
    assert (folder / "config.json").is_file() and not (folder / "model.tar.gz").exists()


def test_failed_build_leaves_no_cache_entry(isolated_cache: Path) -> None:
    target = isolated_cache / "models" / "broken"

    def build(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        catalog._cached(target, build, "building")
    assert not target.exists()
    assert os.listdir(target.parent) == []  # the temp folder is gone too


def test_adapter_folder_loads_base_and_applies_adapter(tiny: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base, tokenizer = load_model_dir(tiny)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter_dir))
    write_model_metadata(adapter_dir, str(tiny))
    ids = tokenizer("hello world", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        merged, _ = load_model_dir(adapter_dir)
        unmerged, adapter_tokenizer = load_model_dir(adapter_dir, merge=False)
        plain, _ = load_model_dir(tiny)
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(unmerged(input_ids=ids).logits, expected)
        assert not torch.allclose(plain(input_ids=ids).logits, expected)
    assert adapter_tokenizer.chat_template == tokenizer.chat_template  # from the base


def test_folder_that_is_not_a_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a Hugging Face model folder"):
        load_model_dir(tmp_path)
    write_model_metadata(tmp_path, "no-such-model")
    with pytest.raises(ValueError, match="no-such-model"):
        load_model_dir(tmp_path)


# ~35 s on 2 CPUs: the demo's model is worth it.
def test_demo_gguf_converts_once_then_uses_the_cache(
    isolated_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = resolve_model(DEMO_MODEL)
    assert "converting SmolLM2-135M-Instruct.Q4_1.gguf" in capsys.readouterr().out
    assert folder == isolated_cache / "models" / DEMO_MODEL
    assert resolve_model(DEMO_MODEL) == folder
    assert "using cached model" in capsys.readouterr().out
    model, tokenizer = load_model_dir(folder)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert model.dtype == torch.float32 and tokenizer.chat_template
