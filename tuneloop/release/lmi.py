"""Serving a model version on AWS's Large Model Inference container (DJL Serving + vLLM).

LMI serves a base model with LoRA adapters from an ``adapters/<name>/`` folder inside its
model directory (the extracted ``ModelDataUrl``), loaded at start-up. The base weights come
from ``HF_MODEL_ID``: a Hugging Face id or an ``s3://`` prefix. So a TuneLoop adapter
artifact (train.py's ``model.tar.gz``: adapter files and ``tuneloop_model.json`` at the root,
our serving code in ``code/``) is repacked once per version into::

    serving.properties
    adapters/<adapter name>/adapter_config.json, adapter_model.safetensors, tokenizer files

(``serving.properties`` repeats the container environment, so the adapters folder sits
beside it as DJL Serving documents) and stored at
``s3://<artifacts>/models/<model_version>/lmi/model.tar.gz``; the model's environment names
the base from ``tuneloop_model.json``. A fully fine-tuned artifact (no
adapter) is served as it is. Everything here runs in the Deploy Lambda: boto3 only.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.models.families import lmi_lora_problem
from tuneloop.settings_keys import did_you_mean

ADAPTERS_DIR = "adapters"
LMI_PREFIX = "models"
METADATA_FILE = "tuneloop_model.json"
# Our serving code travels in the artifact for the Hugging Face DLC; LMI does not use it.
_SKIPPED_TOP_LEVEL = frozenset({"code"})


class LmiArtifactError(ValueError):
    """The model artifact cannot be served by LMI; the message says why."""


# vLLM accepts only these LoRA ranks as its maximum.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
DTYPES = ("bf16", "fp16", "auto")
_ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class LmiOptionsError(ValueError):
    """``LMI_OPTIONS`` cannot be used; the message names the field."""


@dataclass(frozen=True)
class LmiSettings:
    """The ``LMI_OPTIONS`` JSON of the Deploy Lambda (from the stage config, which checks
    them at synth with :meth:`problems`, the same check :meth:`from_json` applies)."""

    adapter_name: str = "tuneloop"
    """The name requests give in ``"adapters"`` (the folder ``adapters/<name>/``)."""
    max_loras: int = 1
    max_lora_rank: int = 64
    """At least the adapters' ``lora_r``; one of vLLM's ranks."""
    max_model_len: int = 4096
    dtype: str = "bf16"

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for every unusable value; empty when they are fine."""
        found: list[tuple[str, str]] = []

        def check(name: str, ok: bool, expectation: str) -> None:
            if not ok:
                found.append((name, f"must be {expectation}, got {getattr(self, name)!r}"))

        def positive(name: str) -> None:
            value = getattr(self, name)
            check(name, type(value) is int and value > 0, "an integer > 0")

        name_ok = isinstance(self.adapter_name, str) and _ADAPTER_NAME.fullmatch(self.adapter_name)
        check("adapter_name", bool(name_ok), "1-64 letters, digits, '-' or '_'")
        positive("max_loras")
        positive("max_model_len")
        check("max_lora_rank", self.max_lora_rank in LORA_RANKS, f"one of {LORA_RANKS}")
        check("dtype", self.dtype in DTYPES, "/".join(DTYPES))
        return found

    def to_json(self) -> str:
        """The ``LMI_OPTIONS`` value (this class's fields only)."""
        fields = dataclasses.fields(LmiSettings)
        return json.dumps({f.name: getattr(self, f.name) for f in fields}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LmiSettings:
        try:
            data = json.loads(text or "{}")
        except ValueError as exc:
            raise LmiOptionsError(f"LMI_OPTIONS: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise LmiOptionsError(f"LMI_OPTIONS must be a JSON object, got {text!r}")
        known = {f.name for f in dataclasses.fields(LmiSettings)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LmiOptionsError(
                f"LMI_OPTIONS: {unknown[0]} is not an option{did_you_mean(unknown[0], known)}; "
                f"the options are {', '.join(sorted(known))}"
            )
        settings = LmiSettings(**data)
        problems = settings.problems()
        if problems:
            details = "; ".join(f"{name} {text}" for name, text in problems)
            raise LmiOptionsError(f"LMI_OPTIONS: {details}")
        return settings


@dataclass(frozen=True)
class LmiModel:
    """What CreateModel needs: the repacked artifact and the container environment."""

    model_data_url: str
    environment: dict[str, str]


def lmi_base_model_id(base_model: str) -> str:
    """``HF_MODEL_ID`` for a base reference: ``hf://org/name`` → ``org/name``; ``s3://`` as is."""
    if base_model.startswith("hf://"):
        return base_model.removeprefix("hf://")
    if base_model.startswith("s3://"):
        return base_model
    raise LmiArtifactError(
        f"base model {base_model!r} cannot be loaded by LMI: use an 'hf://<id>' or "
        "'s3://<uri>' base model (packaged and local models exist only on this machine)"
    )


def lmi_environment(settings: LmiSettings, *, model_id: str, adapter: bool) -> dict[str, str]:
    """The container environment: vLLM rolling batch, plus LoRA when an adapter is served."""
    env = {
        "HF_MODEL_ID": model_id,
        "OPTION_ROLLING_BATCH": "vllm",
        "OPTION_DTYPE": settings.dtype,
        "OPTION_MAX_MODEL_LEN": str(settings.max_model_len),
        "TENSOR_PARALLEL_DEGREE": "max",
    }
    if adapter:
        env.update(
            {
                "OPTION_ENABLE_LORA": "true",
                "OPTION_MAX_LORAS": str(settings.max_loras),
                "OPTION_MAX_LORA_RANK": str(settings.max_lora_rank),
            }
        )
    return env


def prepare_lmi_model(
    model_version: str, model_data: str, *, artifacts_bucket: str, settings: LmiSettings
) -> LmiModel:
    """Repack ``model_data`` (``s3://.../model.tar.gz``) for LMI unless done already."""
    source_bucket, source_key = _split_s3(model_data)
    target_key = f"{LMI_PREFIX}/{model_version}/lmi/model.tar.gz"
    s3 = aws.s3()
    with tempfile.TemporaryFile() as source, tempfile.TemporaryFile() as target:
        s3.download_fileobj(source_bucket, source_key, source)
        source.seek(0)
        metadata = read_metadata(source)
        if not metadata.get("adapter"):  # a full model: LMI loads the artifact itself
            return LmiModel(
                model_data, lmi_environment(settings, model_id="/opt/ml/model", adapter=False)
            )
        check_lmi_adapter(metadata)
        environment = lmi_environment(
            settings,
            model_id=lmi_base_model_id(str(metadata.get("base_model", ""))),
            adapter=True,
        )
        source.seek(0)
        repack_for_lmi(source, target, adapter_name=settings.adapter_name, properties=environment)
        if not _exists(artifacts_bucket, target_key):  # a retried Deploy reuses it
            target.seek(0)
            s3.upload_fileobj(target, artifacts_bucket, target_key)
    return LmiModel(f"s3://{artifacts_bucket}/{target_key}", environment)


def check_lmi_adapter(metadata: dict[str, Any]) -> None:
    """Raise LmiArtifactError when vLLM cannot serve this adapter's model family (the
    ``model_type`` train.py records; artifacts without it are not refused)."""
    problem = lmi_lora_problem(str(metadata.get("model_type", "")))
    if problem:
        raise LmiArtifactError(problem)


def read_metadata(source: IO[bytes]) -> dict[str, Any]:
    """The artifact's ``tuneloop_model.json`` (``{}`` when absent: a full model)."""
    with tarfile.open(fileobj=source, mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and _relative(member.name) == METADATA_FILE:
                return _read_json(archive, member)
    return {}


def serving_properties(environment: dict[str, str]) -> str:
    """``OPTION_MAX_LORAS`` → ``option.max_loras=...``; ``HF_MODEL_ID`` → ``option.model_id``."""
    lines = ["engine=Python"]
    for name, value in sorted(environment.items()):
        if name == "HF_MODEL_ID":
            lines.append(f"option.model_id={value}")
        elif name.startswith("OPTION_") or name == "TENSOR_PARALLEL_DEGREE":
            lines.append(f"option.{name.removeprefix('OPTION_').lower()}={value}")
    return "\n".join(lines) + "\n"


def repack_for_lmi(
    source: IO[bytes], target: IO[bytes], *, adapter_name: str, properties: dict[str, str]
) -> None:
    """Write ``serving.properties`` and the adapter ``model.tar.gz``'s files under
    ``adapters/<adapter_name>/`` to ``target`` (our ``code/`` folder is left out)."""
    with tarfile.open(fileobj=source, mode="r:gz") as archive:
        names = {_relative(m.name): m for m in archive.getmembers() if m.isfile()}
        if "adapter_config.json" not in names:
            raise LmiArtifactError(
                f"the artifact's {METADATA_FILE} says adapter, but it has no adapter_config.json"
            )
        with tarfile.open(fileobj=target, mode="w:gz") as out:
            _add_bytes(out, "serving.properties", serving_properties(properties).encode())
            for name, member in sorted(names.items()):
                if PurePosixPath(name).parts[0] in _SKIPPED_TOP_LEVEL:
                    continue
                data = archive.extractfile(member)
                assert data is not None  # a regular file
                info = tarfile.TarInfo(f"{ADAPTERS_DIR}/{adapter_name}/{name}")
                info.size, info.mode, info.mtime = member.size, 0o644, member.mtime
                out.addfile(info, data)


def _add_bytes(out: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    out.addfile(info, io.BytesIO(data))


def _relative(name: str) -> str:
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "")]
    if any(p == ".." for p in parts) or name.startswith("/"):
        raise LmiArtifactError(f"unsafe path {name!r} in the model artifact")
    return "/".join(parts)


def _read_json(archive: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    handle = archive.extractfile(member)
    assert handle is not None
    try:
        data = json.load(io.TextIOWrapper(handle, encoding="utf-8"))
    except ValueError as exc:
        raise LmiArtifactError(f"unreadable {METADATA_FILE} in the model artifact: {exc}") from exc
    if not isinstance(data, dict):
        raise LmiArtifactError(f"{METADATA_FILE} in the model artifact is not a JSON object")
    return data


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise LmiArtifactError(f"model data must be an s3://bucket/key URI, got {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def _exists(bucket: str, key: str) -> bool:
    try:
        aws.s3().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True
