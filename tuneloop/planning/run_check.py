"""The capacity check synth cannot make: an ``s3://`` base model, sized from its config.json.

``cdk synth`` plans every base model it can size (the catalogue, a local folder); the numbers
of an ``s3://`` model are only in its bucket. PrepareDataset, the step before Train, reads the
model's ``config.json`` (one small GetObject), gives the planner's verdict
(:func:`tuneloop.planning.verdict.check_training`) on the stage's training instance type and
count and hyperparameters, ``sharding`` among them (its ``TRAINING_CAPACITY``,
:class:`TrainingCapacitySettings`) and, under ``enforce``, fails the run before the GPU job
with the planner's advice; ``warn`` leaves the verdict to the log. An archive (``.tar.gz``)
holds its config inside: it is not read, and the check is skipped with that reason, as is a
model whose config cannot be read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tuneloop.planning.shapes import ModelShape, ShapeError, shape_from_config
from tuneloop.planning.verdict import DOES_NOT_FIT, SKIPPED, Verdict, check_training

CHECK_MODES = ("enforce", "warn")
CONFIG_FILE = "config.json"
# A model's config.json is a few KiB; anything far larger is not one.
CONFIG_LIMIT_BYTES = 1024 * 1024
_ARCHIVES = (".tar.gz", ".tgz")


class CapacitySettingsError(ValueError):
    """``TRAINING_CAPACITY`` is malformed; the message names the field."""


class TrainingCapacityError(RuntimeError):
    """Train would not fit its GPUs: the message names what to change."""


@dataclass(frozen=True, kw_only=True)
class TrainingCapacitySettings:
    """What the Train job will run with, as the stage config sets it."""

    training_instance_type: str
    training_capacity_check: str = "enforce"
    training_instance_count: int = 1
    """FSDP shards over the GPUs of every instance."""
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    """The trainer's hyperparameters in their own types, ``base_model`` among them."""

    @property
    def base_model(self) -> str:
        return str(self.hyperparameters.get("base_model", ""))

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.training_capacity_check not in CHECK_MODES:
            found.append(
                (
                    "training_capacity_check",
                    f"must be 'enforce' or 'warn', got {self.training_capacity_check!r}",
                )
            )
        if not isinstance(self.training_instance_type, str) or not self.training_instance_type:
            found.append(
                (
                    "training_instance_type",
                    f"must be an instance type, got {self.training_instance_type!r}",
                )
            )
        count = self.training_instance_count
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            found.append(("training_instance_count", f"must be an integer >= 1, got {count!r}"))
        if not isinstance(self.hyperparameters, Mapping) or not self.base_model:
            found.append(
                (
                    "hyperparameters",
                    f"must be an object with a base_model, got {self.hyperparameters!r}",
                )
            )
        return found

    def to_json(self) -> str:
        return json.dumps(
            {**dataclasses.asdict(self), "hyperparameters": dict(self.hyperparameters)},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> TrainingCapacitySettings:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise CapacitySettingsError(f"training capacity settings are not JSON: {exc}") from exc
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, Mapping) or set(raw) - names:
            raise CapacitySettingsError(
                f"training capacity settings must be an object of {', '.join(sorted(names))}, "
                f"got {raw!r}"
            )
        settings = cls(**dict(raw))
        problems = settings.problems()
        if problems:
            raise CapacitySettingsError(
                "training capacity settings are invalid: "
                + "; ".join(f"{name} {why}" for name, why in problems)
            )
        return settings


def model_config_location(base_model: str) -> tuple[str, str] | None:
    """``(bucket, key)`` of the ``config.json`` beside an ``s3://`` base model's weights;
    None for other references and for archives."""
    if not base_model.startswith("s3://"):
        return None
    bucket, _, key = base_model.removeprefix("s3://").partition("/")
    if not bucket or key.endswith(_ARCHIVES):
        return None
    prefix = f"{key.rstrip('/')}/" if key.strip("/") else ""
    return bucket, f"{prefix}{CONFIG_FILE}"


def read_model_shape(s3: Any, base_model: str) -> tuple[ModelShape | None, str]:
    """``(shape, "")`` from the model's config.json in S3, or ``(None, why not)``."""
    location = model_config_location(base_model)
    if location is None:
        if base_model.endswith(_ARCHIVES):
            return None, f"{base_model} is an archive: its {CONFIG_FILE} is inside it, not read"
        return None, f"{base_model} names no S3 folder holding a {CONFIG_FILE}"
    bucket, key = location
    uri = f"s3://{bucket}/{key}"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(CONFIG_LIMIT_BYTES + 1)
    except ClientError as exc:  # a missing key reads as AccessDenied without s3:ListBucket
        return None, f"cannot read {uri}: {exc.response.get('Error', {}).get('Code', exc)}"
    except BotoCoreError as exc:
        return None, f"cannot read {uri}: {exc}"
    if len(body) > CONFIG_LIMIT_BYTES:
        return None, f"{uri} is larger than {CONFIG_LIMIT_BYTES} bytes: not a model config"
    try:
        config = json.loads(body)
    except ValueError as exc:
        return None, f"{uri} is not JSON: {exc}"
    try:
        return shape_from_config(config, name=base_model, source=uri), ""
    except (ShapeError, TypeError, ValueError) as exc:  # a number missing or not a number
        return None, f"{uri}: {exc}"


def check_s3_base_model(settings: TrainingCapacitySettings, s3: Any) -> Verdict | None:
    """The planner's verdict on Train for an ``s3://`` base model (None for any other: synth
    has checked those); raises :class:`TrainingCapacityError` when it does not fit under
    ``enforce``."""
    if not settings.base_model.startswith("s3://"):
        return None
    shape, reason = read_model_shape(s3, settings.base_model)
    if shape is None:
        return Verdict(
            SKIPPED, settings.training_instance_type, f"base model size unknown: {reason}"
        )
    verdict = check_training(
        settings.hyperparameters,
        settings.training_instance_type,
        instance_count=settings.training_instance_count,
        shape=shape,
    )
    if verdict.status == DOES_NOT_FIT and settings.training_capacity_check == "enforce":
        raise TrainingCapacityError(does_not_fit_message(settings, verdict))
    return verdict


def does_not_fit_message(settings: TrainingCapacitySettings, verdict: Verdict) -> str:
    return (
        f"Train would run out of GPU memory with base model {settings.base_model}: "
        f"{verdict.message}. Set that in the stage config's training settings (or "
        "training_instance_type), or training_capacity_check 'warn' to train anyway"
    )
