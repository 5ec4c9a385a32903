"""The typed stage configuration of the CDK app.

Configuration flows one way: context ``stage`` (and the few allowed overrides) → ``app.py``
→ :func:`load_stage_config` → a frozen :class:`StageConfig` → stack and construct props →
Lambda environment variables and SageMaker job settings. Nothing else on the CDK side reads
context or the environment.

Every dataclass validates itself in ``__post_init__``; a bad value raises
:class:`ConfigError` naming the stage and the field, e.g.
``stage 'dev': retrain_threshold must be > 0, got -1``, which fails ``cdk synth``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from stacks import dlc_images
from tuneloop.connectors.settings import (
    ConnectorConfigError,
    ConnectorSettings,
    duplicate_name_problems,
    parse_connectors,
)
from tuneloop.datasets import SplitSettings
from tuneloop.gating.policy import GatePolicy, PolicyError, SuitePolicy, parse_policy
from tuneloop.incidents.settings import IncidentSettings
from tuneloop.ingest.settings import DEFAULT_SETTINGS as DEFAULT_INGEST_SETTINGS
from tuneloop.ingest.settings import (
    IngestSettings,
    IngestSettingsError,
    settings_problems,
    settings_with,
)
from tuneloop.model_line_settings import ModelLineError, ModelLines
from tuneloop.planning.estimate import SHARDINGS
from tuneloop.planning.instances import gpu_instance, is_cpu_instance
from tuneloop.planning.run_check import TrainingCapacitySettings
from tuneloop.planning.verdict import DOES_NOT_FIT, Verdict, check_training, ordered_instances
from tuneloop.release.autoscaling import AutoscalingSettings, AutoscalingSettingsError
from tuneloop.release.lmi import LmiSettings
from tuneloop.release.rollout import RolloutSettings, RolloutSettingsError
from tuneloop.release.serving_container import BACKENDS as SERVING_BACKENDS
from tuneloop.settings_keys import did_you_mean
from tuneloop.training.config import TrainConfig, TrainingError
from tuneloop.watch.drift_settings import DriftCheckSettings, DriftSettingsError
from tuneloop.watch.evaluation import ContinuousEvaluationSettings
from tuneloop.watch.quality import QualitySettings

LOCAL_BASE_MODEL = "smollm2-135m-instruct"
"""The packaged GGUF base model (see ARCHITECTURE.md, "Models")."""

OVERRIDABLE_FIELDS = (
    "base_model",
    "retrain_threshold",
    "connectors",
    "serving_backend",
    "ingest",
    "gate_policy",
    "console_domain_prefix",
    "rollout",
    "drift_check",
    "autoscaling",
    "model_lines",
)
"""Context keys that may override a stage's value (``cdk synth -c base_model=...``);
``connectors`` is a list of connector objects (cdk.json) or its JSON text (docs/connectors.md);
``ingest`` an object of ingest settings (or its JSON text) merged onto the stage's;
``gate_policy`` a whole gate policy (or its JSON text, docs/contracts.md) replacing the stage's;
``console_domain_prefix`` the Cognito hosted UI prefix, which must be unique in the region
(the stage's default is taken once one account in the region uses it);
``rollout`` an object of rollout settings (or its JSON text) merged onto the stage's;
``drift_check`` an object of drift check settings (or its JSON text) merged onto the stage's;
``autoscaling`` an object of autoscaling settings (or its JSON text) merged onto the stage's;
``model_lines`` a list of model lines (or its JSON text) replacing the stage's (docs/serving.md,
"Model lines")."""

# ResourceConfig.InstanceCount has no API maximum (0 only with instance groups, which Train
# does not use); what binds is the account's adjustable per-instance-type training quota,
# unknown at synth. This bound only catches a mistyped count before it requests a fleet.
MAX_TRAINING_INSTANCES = 64

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = frozenset(
    {
        1,
        3,
        5,
        7,
        14,
        30,
        60,
        90,
        120,
        150,
        180,
        365,
        400,
        545,
        731,
        1096,
        1827,
        2192,
        2557,
        2922,
        3288,
        3653,
    }
)
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_IMAGE_REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9._/-]*$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# A Cognito hosted UI domain prefix: lowercase letters, digits and inner hyphens, at most 63
# characters, and none of the words Cognito reserves (CreateUserPoolDomain).
_DOMAIN_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN_RESERVED_WORDS = ("aws", "amazon", "cognito")


class ConfigError(ValueError):
    """A stage configuration value is invalid; the message names the stage and the field."""


Problem = tuple[str, str]
"""(dotted field name, what is wrong)."""


def _check(problems: list[Problem], name: str, value: Any, ok: bool, expectation: str) -> None:
    if not ok:
        problems.append((name, f"must be {expectation}, got {value!r}"))


def _positive_int(problems: list[Problem], name: str, value: Any) -> None:
    _check(
        problems,
        name,
        value,
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        "> 0",
    )


def _number_in(
    problems: list[Problem], name: str, value: Any, low: float, high: float, text: str
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
    _check(problems, name, value, ok, text)


def _prefixed(prefix: str, problems: list[Problem]) -> list[Problem]:
    return [(f"{prefix}.{name}", text) for name, text in problems]


@dataclass(frozen=True, kw_only=True)
class TrainingHyperparameters:
    """LoRA fine-tuning settings passed to ``train.py`` as hyperparameters."""

    max_steps: int
    learning_rate: float
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    max_seq_length: int
    per_device_batch_size: int
    seed: int = 0
    # A resumable checkpoint every N steps (beside the one saved on SIGTERM), so a spot
    # reclaim that gives no notice loses at most N steps.
    checkpoint_steps: int = 50
    # Share of the training set the trainer draws from the replay channel (capped at what
    # PrepareDataset exported); 0.5 uses the whole export at REPLAY_RATIO <= 1.
    replay_fraction: float = 0.5
    # The capacity planner's levers (docs/training.md, "Capacity planning"): the effective
    # batch is per_device_batch_size x gradient_accumulation_steps (x GPUs), so a smaller
    # micro-batch with more accumulation trains the same; checkpointing recomputes
    # activations (~30% slower); quantize_4bit is QLoRA (bitsandbytes in the image).
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    quantize_4bit: bool = False
    # "fsdp": FSDP2 over every GPU of the job, each holding 1/N of the weights, gradients and
    # optimizer state (docs/training.md, "Sharded training"); the job needs several GPUs.
    sharding: str = "none"

    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        for name in (
            "max_steps",
            "lora_r",
            "lora_alpha",
            "max_seq_length",
            "per_device_batch_size",
            "gradient_accumulation_steps",
        ):
            _positive_int(found, name, getattr(self, name))
        for name in ("gradient_checkpointing", "quantize_4bit"):
            value = getattr(self, name)
            _check(found, name, value, isinstance(value, bool), "a bool")
        _number_in(found, "learning_rate", self.learning_rate, 1e-9, 1.0, "in (0, 1]")
        _number_in(found, "lora_dropout", self.lora_dropout, 0.0, 0.99, "in [0, 1)")
        _number_in(found, "replay_fraction", self.replay_fraction, 0.0, 0.99, "in [0, 1)")
        _check(
            found,
            "checkpoint_steps",
            self.checkpoint_steps,
            isinstance(self.checkpoint_steps, int) and self.checkpoint_steps >= 0,
            ">= 0",
        )
        _check(found, "seed", self.seed, isinstance(self.seed, int) and self.seed >= 0, ">= 0")
        _check(
            found,
            "sharding",
            self.sharding,
            self.sharding in SHARDINGS,
            "'none' or 'fsdp' (FSDP2 over the Train job's GPUs)",
        )
        return found or self._trainer_problems()

    def _trainer_problems(self) -> list[Problem]:
        """What train.py rejects in these settings together (sharding fsdp with
        quantize_4bit), with its reason: synth fails rather than the Train job."""
        try:
            TrainConfig(**dataclasses.asdict(self)).validate()
        except TrainingError as error:
            return [("hyperparameters", f"rejected by train.py: {error}")]
        return []

    def as_hyperparameters(self) -> dict[str, str]:
        """SageMaker hyperparameters are strings (booleans ``true``/``false``)."""
        return {f.name: _hyperparameter(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _hyperparameter(value: Any) -> str:
    # str(True) is "True": the trainer reads either, but "true" is what SageMaker shows.
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """Benchmark settings passed to ``evaluate.py``."""

    mmlu_subset_size: int
    seed: int = 0

    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        _positive_int(found, "mmlu_subset_size", self.mmlu_subset_size)
        _check(found, "seed", self.seed, isinstance(self.seed, int) and self.seed >= 0, ">= 0")
        return found


@dataclass(frozen=True, kw_only=True)
class AlarmThresholds:
    """Endpoint and ingestion alarms (the endpoint alarms also drive auto-rollback)."""

    invocation_5xx_errors: int
    """Sum of ``Invocation5XXErrors`` per minute at or above which the alarm fires."""
    model_latency_p99_ms: int
    """p99 ``ModelLatency`` per minute (milliseconds) above which the alarm fires."""
    evaluation_periods: int = 3
    dlq_messages: int = 1
    """Visible messages in the ingest DLQ at or above which the alarm fires."""

    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        for name in (
            "invocation_5xx_errors",
            "model_latency_p99_ms",
            "evaluation_periods",
            "dlq_messages",
        ):
            _positive_int(found, name, getattr(self, name))
        return found

    @property
    def model_latency_p99_microseconds(self) -> int:
        """``AWS/SageMaker ModelLatency`` is reported in microseconds."""
        return self.model_latency_p99_ms * 1000


@dataclass(frozen=True, kw_only=True)
class DlcImage:
    """An AWS Deep Learning Container image: repository and tag in AWS's DLC registry.

    It must be one the SageMaker SDK lists (:mod:`stacks.dlc_images`), which gives its
    registry account per region; :mod:`stacks.constructs.dlc_image` turns this into a URI
    with a CloudFormation mapping, so no account or region is hardcoded.
    """

    repository: str
    tag: str

    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        _check(
            found,
            "repository",
            self.repository,
            bool(_IMAGE_REPOSITORY.match(self.repository)),
            "an ECR repository name",
        )
        _check(found, "tag", self.tag, bool(_IMAGE_TAG.match(self.tag)), "an image tag")
        if not found:  # the URI comes from the SDK's data, so the image must be in it
            problem = dlc_images.image_problem(self.repository, self.tag)
            if problem:
                found.append(problem)
        return found


@dataclass(frozen=True, kw_only=True)
class LmiOptions(LmiSettings):
    """The ``lmi`` serving backend (AWS's Large Model Inference container, DJL Serving +
    vLLM, with the LoRA adapter): its image, and the Deploy Lambda's ``LMI_OPTIONS``, which
    are :class:`tuneloop.release.lmi.LmiSettings` and checked by its own :meth:`problems`."""

    image: DlcImage

    def problems(self) -> list[Problem]:
        return _prefixed("image", self.image.problems()) + super().problems()


# AWS's LMI DLC (vLLM rolling batch, LoRA adapters), same registry accounts as the others.
_LMI_IMAGE = DlcImage(repository="djl-inference", tag="0.33.0-lmi15.0.0-cu128")
_LMI_OPTIONS = LmiOptions(image=_LMI_IMAGE)


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """Everything that differs between stages. Built by :func:`load_stage_config`."""

    stage: str
    # SageMaker training and evaluation jobs
    base_model: str
    training_instance_type: str
    training_volume_gb: int
    training_max_runtime_minutes: int
    training: TrainingHyperparameters
    evaluation: EvalSettings
    training_image: DlcImage
    # Managed spot training for Train (checkpoints in S3 make a reclaim cost only the steps
    # since the last checkpoint); the job may wait for capacity up to max_wait in total.
    training_spot: bool = False
    training_spot_max_wait_minutes: int = 0
    # Instances of the Train job (ResourceConfig.InstanceCount), one data-parallel process
    # group across them (docs/training.md, "Multi-GPU and multi-node"). Works with spot.
    training_instance_count: int = 1
    # The capacity planner's verdict on Train's GPU memory (docs/training.md, "Capacity
    # planning"): "enforce" fails synth when the base model, settings and instance type
    # cannot fit; "warn" leaves it to `tuneloop plan --stage <stage>` to show.
    training_capacity_check: Literal["enforce", "warn"] = "enforce"
    # Serving
    serving_instance_type: str
    serving_image: DlcImage
    alarms: AlarmThresholds
    endpoint_poll_seconds: int
    serving_backend: str = "tuneloop"  # one of SERVING_BACKENDS
    # How an update shifts traffic (all at once, canary, linear) and the variant's instance
    # count; Deploy's ROLLOUT_SETTINGS, checked against the SageMaker API's limits.
    rollout: RolloutSettings = dataclasses.field(default_factory=RolloutSettings)
    # Target tracking of the variant's instance count (docs/serving.md, "Autoscaling"); the
    # AUTOSCALING_SETTINGS of Deploy, ConfirmDeployment and Rollback.
    autoscaling: AutoscalingSettings = dataclasses.field(default_factory=AutoscalingSettings)
    lmi: LmiOptions = _LMI_OPTIONS
    # The loop
    retrain_threshold: int
    retrain_schedule_minutes: int
    # Read by the Gate (GATE_POLICY) with tuneloop.gating.policy, which checks it here too.
    gate_policy: GatePolicy
    # PrepareDataset's held-out slice and replay sample (HELDOUT_*, REPLAY_RATIO).
    dataset: SplitSettings = dataclasses.field(default_factory=SplitSettings)
    execution_timeout_hours: int
    # Operations
    log_retention_days: int
    noncurrent_version_retention_days: int
    access_log_retention_days: int
    quarantine_retention_days: int
    powertools_layer_version: int
    removal_policy: Literal["retain", "destroy"]
    termination_protection: bool
    # Pull connectors (docs/connectors.md): none by default, so no connector resources.
    connectors: tuple[ConnectorSettings, ...] = ()
    # Ingestion (docs/ingestion.md): redactors, quality thresholds, near-duplicates,
    # chunk and segment sizes; the Ingest function's INGEST_SETTINGS.
    ingest: IngestSettings = DEFAULT_INGEST_SETTINGS
    # The console (docs/stacks.md, "Console"): the prefix of its Cognito hosted UI domain
    # https://<prefix>.auth.<region>.amazoncognito.com, unique within the region.
    console_domain_prefix: str
    # The scheduled re-evaluation of production on the gate's suites (docs/monitoring.md).
    continuous_evaluation: ContinuousEvaluationSettings = dataclasses.field(
        default_factory=ContinuousEvaluationSettings
    )
    # Data capture, per-request quality metrics and quality alarms (docs/monitoring.md).
    quality: QualitySettings = dataclasses.field(default_factory=QualitySettings)
    # The scheduled drift check of captured prompts against the training data (same doc).
    drift_check: DriftCheckSettings = dataclasses.field(default_factory=DriftCheckSettings)
    # Incidents: the repeated-failure guard, the chat webhook (docs/monitoring.md).
    incidents: IncidentSettings = dataclasses.field(default_factory=IncidentSettings)
    # Several LoRA fine-tunes of the base on one endpoint (docs/serving.md, "Model lines"):
    # none by default, one model per endpoint.
    model_lines: ModelLines = dataclasses.field(default_factory=ModelLines)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            details = "; ".join(f"{name} {text}" for name, text in problems)
            raise ConfigError(f"stage {self.stage!r}: {details}")
        # Hold the policy exactly as the Gate will read it back (defaults filled in).
        object.__setattr__(self, "gate_policy", parse_policy(self.gate_policy.to_dict()))

    @property
    def dlc_images(self) -> dict[str, DlcImage]:
        """The DLC images the stacks pull, by setting name (LMI's only with that backend)."""
        images = {"training_image": self.training_image, "serving_image": self.serving_image}
        if self.serving_backend == "lmi":
            images["lmi.image"] = self.lmi.image
        return images

    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        _check(
            found,
            "stage",
            self.stage,
            bool(re.match(r"^[a-z][a-z0-9]{0,11}$", self.stage)),
            "1-12 lower-case letters/digits",
        )
        found += _base_model_problems(self.stage, self.base_model)
        for name in ("training_instance_type", "serving_instance_type"):
            value = getattr(self, name)
            _check(
                found,
                name,
                value,
                bool(_INSTANCE_TYPE.match(str(value))),
                "a SageMaker instance type like 'ml.g5.xlarge'",
            )
        _check(
            found,
            "training_instance_count",
            self.training_instance_count,
            _valid_instance_count(self.training_instance_count),
            f"an integer from 1 to {MAX_TRAINING_INSTANCES} (the Train job's instances; "
            "the account's training quota for the instance type must allow as many)",
        )
        if self.training_spot:
            _check(
                found,
                "training_spot_max_wait_minutes",
                self.training_spot_max_wait_minutes,
                isinstance(self.training_spot_max_wait_minutes, int)
                and self.training_spot_max_wait_minutes >= self.training_max_runtime_minutes,
                ">= training_max_runtime_minutes when training_spot is on",
            )
        for name in (
            "training_volume_gb",
            "training_max_runtime_minutes",
            "endpoint_poll_seconds",
            "retrain_threshold",
            "retrain_schedule_minutes",
            "execution_timeout_hours",
            "noncurrent_version_retention_days",
            "access_log_retention_days",
            "quarantine_retention_days",
            "powertools_layer_version",
        ):
            _positive_int(found, name, getattr(self, name))
        _check(
            found,
            "log_retention_days",
            self.log_retention_days,
            self.log_retention_days in LOG_RETENTION_DAYS,
            f"one of CloudWatch Logs' retention periods {sorted(LOG_RETENTION_DAYS)}",
        )
        _check(
            found,
            "removal_policy",
            self.removal_policy,
            self.removal_policy in ("retain", "destroy"),
            "'retain' or 'destroy'",
        )
        _check(
            found,
            "termination_protection",
            self.termination_protection,
            isinstance(self.termination_protection, bool),
            "a bool",
        )
        nested: dict[str, Callable[[], list[Problem]]] = {
            "training": self.training.problems,
            "evaluation": self.evaluation.problems,
            "training_image": self.training_image.problems,
            "serving_image": self.serving_image.problems,
            "lmi": self.lmi.problems,
            "alarms": self.alarms.problems,
            "continuous_evaluation": self.continuous_evaluation.problems,
            "quality": self.quality.problems,
            "rollout": self.rollout.problems,
            "autoscaling": self._autoscaling_problems,
            "drift_check": self.drift_check.problems,
            "incidents": self.incidents.problems,
        }
        for prefix, check in nested.items():
            found += _prefixed(prefix, check())
        found += gate_policy_problems(self.gate_policy)
        found += self._rollout_timeout_problems()
        found += self._serving_backend_problems()
        for index, connector in enumerate(self.connectors):
            found += _prefixed(f"connectors[{index}]", connector.problems())
        found += duplicate_name_problems(self.connectors)
        found += _prefixed("ingest", settings_problems(self.ingest))
        found += _domain_prefix_problems(self.console_domain_prefix)
        found += self._sharding_problems()
        found += self._training_capacity_problems()
        found += self._model_line_problems()
        return found

    def _model_line_problems(self) -> list[Problem]:
        if not isinstance(self.model_lines, ModelLines):
            return [("model_lines", f"must be a ModelLines, got {self.model_lines!r}")]
        found: list[Problem] = []
        for index, line in enumerate(self.model_lines.lines):
            if line.gate_policy is not None:
                found += _prefixed(f"model_lines[{index}]", gate_policy_problems(line.gate_policy))
        return found + self._component_endpoint_problems()

    def _component_endpoint_problems(self) -> list[Problem]:
        """Settings of a one-model endpoint that an endpoint of model lines cannot honour
        (docs/serving.md, "Model lines"): a line goes live by swapping its
        adapter component, not by a blue/green endpoint update, and the variant's instance
        count is not what scales a component."""
        lines = len(self.model_lines.lines)
        if not lines:
            return []
        found: list[Problem] = []
        if self.rollout.mode != "all_at_once":
            found.append(
                (
                    "rollout.mode",
                    f"must be 'all_at_once' with model_lines, got {self.rollout.mode!r}: a "
                    "line's version replaces its adapter component in place, with no canary "
                    "or linear traffic shift; set rollout.mode 'all_at_once' or drop model_lines",
                )
            )
        if self.autoscaling.enabled:
            found.append(
                (
                    "autoscaling.enabled",
                    "must be false with model_lines: target tracking of the variant's instance "
                    "count does not scale an endpoint of inference components; set "
                    "-c autoscaling='{\"enabled\": false}' or drop model_lines",
                )
            )
        if self.serving_backend == "tuneloop" and self.stage != "local":
            # The Hugging Face DLC's inference toolkit serves one model directory through
            # inference.py; the adapter API SageMaker drives for adapter components is our
            # serve.py's (the local platform's container) and LMI's.
            found.append(
                (
                    "serving_backend",
                    "must be 'lmi' with model_lines on AWS, got 'tuneloop': adapter inference "
                    "components need a container with SageMaker's LoRA adapter API (LMI); our "
                    "server has it only on the local platform; set -c serving_backend=lmi",
                )
            )
        return found

    def _autoscaling_problems(self) -> list[Problem]:
        """The APIs' limits, and a deployment's start (rollout.instance_count) in min..max."""
        count = self.rollout.instance_count
        valid_count = isinstance(count, int) and not isinstance(count, bool) and count >= 1
        return self.autoscaling.problems(count if valid_count else None)

    def _sharding_problems(self) -> list[Problem]:
        """FSDP shards over the job's processes: with one there is nothing to shard over."""
        count = self.training_instance_count
        if self.training.sharding != "fsdp" or not _valid_instance_count(count):
            return []
        processes = _training_processes(self.training_instance_type, count)
        if processes is None or processes > 1:  # an unlisted type's GPUs are unknown
            return []
        instance = gpu_instance(self.training_instance_type)
        if instance is None:  # a CPU type: one process per instance
            what, per_gpu = f"{self.training_instance_type} (CPU: one process)", ""
            fixes = "set training_instance_count to 2 or more"
        else:
            what, per_gpu = instance.describe(), ", one per GPU,"
            bigger = _multi_gpu_type(instance.gpu)
            fixes = (
                "set training_instance_count to 2 or more, a training_instance_type with "
                f"several GPUs{f' (e.g. {bigger})' if bigger else ''}"
            )
        return [
            (
                "training.sharding",
                f"'fsdp' shards over the Train job's processes{per_gpu} but one instance "
                f"of {what} runs one: {fixes}, or training.sharding 'none'",
            )
        ]

    def training_capacity(self) -> Verdict:
        """The planner's verdict on the Train job: the trainer's hyperparameters (its
        defaults where the stage sets none) on ``training_instance_count`` instances of
        ``training_instance_type`` (FSDP divides over all their GPUs); skipped, with the
        reason, for CPU instance types and base models of unknown size."""
        settings = self.training_capacity_settings()
        return check_training(
            settings.hyperparameters,
            self.training_instance_type,
            instance_count=settings.training_instance_count,
        )

    def training_capacity_settings(self) -> TrainingCapacitySettings:
        """PrepareDataset's TRAINING_CAPACITY: the same check at run time, for an ``s3://``
        base model whose size synth cannot know (tuneloop/planning/run_check.py)."""
        count = self.training_instance_count
        return TrainingCapacitySettings(
            training_instance_type=self.training_instance_type,
            training_capacity_check=self.training_capacity_check,
            training_instance_count=count if _valid_instance_count(count) else 1,
            hyperparameters={"base_model": self.base_model, **dataclasses.asdict(self.training)},
        )

    def _training_capacity_problems(self) -> list[Problem]:
        name = "training_capacity_check"
        if self.training_capacity_check not in ("enforce", "warn"):
            return [(name, f"must be 'enforce' or 'warn', got {self.training_capacity_check!r}")]
        if self.training_capacity_check == "warn":
            return []
        verdict = self.training_capacity()
        if verdict.status != DOES_NOT_FIT:
            return []
        stage_fields = {f.name for f in dataclasses.fields(TrainingHyperparameters)}
        unset = sorted(
            {name for c in verdict.changes for name in (c.setting, *c.also)}
            - stage_fields
            - {"training_instance_type"}
        )
        # Changes the stage config cannot make (full fine-tuning).
        note = f" ({', '.join(unset)}: not settings of the stage config)"
        return [("training_instance_type", verdict.message + (note if unset else ""))]

    def _rollout_timeout_problems(self) -> list[Problem]:
        """A run waits for the endpoint update: it must be allowed to last as long."""
        limit = self.rollout.maximum_execution_timeout_seconds
        hours = self.execution_timeout_hours
        if not isinstance(limit, int) or not isinstance(hours, int) or limit < hours * 3600:
            return []
        return [
            (
                "rollout.maximum_execution_timeout_seconds",
                f"must be below the run's execution_timeout_hours ({hours * 3600} s), got {limit}",
            )
        ]

    def _serving_backend_problems(self) -> list[Problem]:
        found: list[Problem] = []
        if self.serving_backend not in SERVING_BACKENDS:
            hint = did_you_mean(str(self.serving_backend), SERVING_BACKENDS)
            found.append(
                (
                    "serving_backend",
                    f"must be one of {SERVING_BACKENDS}, got {self.serving_backend!r}{hint}",
                )
            )
        if self.serving_backend == "lmi":
            if not self.base_model.startswith(("hf://", "s3://")):
                reason = f"'lmi' needs an hf:// or s3:// base_model, got {self.base_model!r}"
                found.append(("serving_backend", reason))
            rank = self.training.lora_r
            if isinstance(rank, int) and rank > self.lmi.max_lora_rank:
                found.append(
                    (
                        "lmi.max_lora_rank",
                        f"must be >= training.lora_r ({rank}), got {self.lmi.max_lora_rank}",
                    )
                )
        return found

    @property
    def retain_data(self) -> bool:
        return self.removal_policy == "retain"


def _valid_instance_count(count: Any) -> bool:
    return (
        isinstance(count, int)
        and not isinstance(count, bool)
        and 1 <= count <= MAX_TRAINING_INSTANCES
    )


def _training_processes(instance_type: str, count: int) -> int | None:
    """The Train job's processes: one per GPU (one per instance on CPU); None for a type
    the planner's table does not list."""
    instance = gpu_instance(instance_type)
    if instance is not None:
        return instance.gpus * count
    return count if is_cpu_instance(instance_type) else None


def _multi_gpu_type(gpu: str) -> str:
    """The smallest listed type with several ``gpu`` GPUs, described."""
    for other in ordered_instances():
        if other.gpus > 1 and other.gpu == gpu:
            return other.describe()
    return ""


def gate_policy_problems(policy: Any) -> list[Problem]:
    """What the Gate would reject in ``policy``: the check is the Gate's own parser."""
    if not isinstance(policy, GatePolicy):
        return [("gate_policy", f"must be a tuneloop.gating.policy.GatePolicy, got {policy!r}")]
    try:
        parse_policy(policy.to_dict(), source="gate_policy")
    except PolicyError as error:
        # "gate_policy.suites.mmlu.metric: one of acc, acc_norm, perplexity"
        return [(f"gate_policy.{error.field}:" if error.field else "gate_policy:", error.reason)]
    return []


def _domain_prefix_problems(prefix: Any) -> list[Problem]:
    name = "console_domain_prefix"
    if not isinstance(prefix, str) or not _DOMAIN_PREFIX.match(prefix):
        expectation = "1-63 lowercase letters, digits and inner hyphens"
        return [(name, f"must be {expectation}, got {prefix!r}")]
    reserved = [word for word in _DOMAIN_RESERVED_WORDS if word in prefix]
    if reserved:
        return [(name, f"must not contain Cognito's reserved word {reserved[0]!r}, got {prefix!r}")]
    return []


def _base_model_problems(stage: str, base_model: Any) -> list[Problem]:
    if not isinstance(base_model, str) or not base_model.strip():
        return [("base_model", f"must be a model reference, got {base_model!r}")]
    if base_model == LOCAL_BASE_MODEL:
        return []
    if re.match(r"^hf://[A-Za-z0-9][\w.-]*(/[\w.-]+)?$", base_model):
        return []
    if re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", base_model):
        return []
    if stage == "local":  # a model folder on this machine (the tests use a tiny one)
        return []
    return [
        (
            "base_model",
            f"must be {LOCAL_BASE_MODEL!r}, 'hf://<id>' or 's3://<uri>' "
            f"(local folders only on stage 'local'), got {base_model!r}",
        )
    ]


# ---------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------

# Hugging Face PyTorch DLCs (https://github.com/aws/deep-learning-containers); script mode
# installs requirements.txt from sourcedir.tar.gz on top of the training image. The
# inference image serves model.tar.gz with its own packages and installs nothing:
# training_containers/requirements-serving.txt lists them, a test checks it against the tag.
_HF_TRAINING_IMAGE = DlcImage(
    repository="huggingface-pytorch-training",
    tag="2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04",
)
_HF_INFERENCE_IMAGE = DlcImage(
    repository="huggingface-pytorch-inference",
    tag="2.6.0-transformers5.5.3-gpu-py312-cu124-ubuntu22.04",
)

_GATE_POLICY = GatePolicy(
    suites=(
        SuitePolicy(name="mmlu", role="general", metric="acc", delta=0.05),
        SuitePolicy(name="company_faq", role="must_pass", metric="acc", floor=0.5),
    ),
    bootstrap_samples=2000,
    confidence=0.95,
    seed=0,
)

# The demo's policy: its company benchmark (examples/benchmarks/acme_support.jsonl: facts
# only the drops teach) must pass, and the decision shows the paired gain over the champion
# or, for the first model, over the base model; MMLU must not regress. The local stage's
# 50-item MMLU subset is what benchmarks/gate_power.py finds this 0.25 margin needs; a 20-item
# subset blocked an unchanged model on noise (a 2-item swing reached the margin).
_LOCAL_GATE_POLICY = GatePolicy(
    suites=(
        SuitePolicy(name="mmlu", role="general", metric="acc", delta=0.25),
        SuitePolicy(name="acme_support", role="must_pass", metric="acc_norm", floor=0.5),
    ),
    bootstrap_samples=2000,
    confidence=0.95,
    seed=0,
)

_POWERTOOLS_LAYER_VERSION = 27


def _dev() -> StageConfig:
    return StageConfig(
        stage="dev",
        base_model="hf://HuggingFaceTB/SmolLM2-1.7B-Instruct",
        training_instance_type="ml.g5.2xlarge",
        training_volume_gb=100,
        training_max_runtime_minutes=240,
        # Dev runs on spot: ~60-70% cheaper, and a reclaim only delays the run (exact resume
        # from the S3 checkpoints). Prod turns it off for a predictable time to deployment.
        training_spot=True,
        training_spot_max_wait_minutes=480,
        # An effective batch of 4 x 1024 tokens: 4 rows at once need ~26.4 GiB per GPU on
        # ml.g5.2xlarge (1 x A10G, 21.6 GiB usable); 2 rows x 2 accumulated need 18.7 GiB
        # (`tuneloop plan --stage dev`), with no recompute (checkpointing is ~30% slower).
        training=TrainingHyperparameters(
            max_steps=500,
            learning_rate=2e-4,
            lora_r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            max_seq_length=1024,
            per_device_batch_size=2,
            gradient_accumulation_steps=2,
            seed=0,
        ),
        evaluation=EvalSettings(mmlu_subset_size=1000, seed=0),
        training_image=_HF_TRAINING_IMAGE,
        serving_instance_type="ml.g5.xlarge",
        serving_image=_HF_INFERENCE_IMAGE,
        alarms=AlarmThresholds(invocation_5xx_errors=5, model_latency_p99_ms=5000),
        endpoint_poll_seconds=60,
        # One instance, up to four under load (room for a canary of one in four, which
        # starts every deployment at rollout.instance_count 4). 30 invocations a minute per
        # instance is a starting point, not a measurement: tune it from the endpoint's
        # InvocationsPerInstance at the latency you accept (docs/serving.md, "Autoscaling").
        autoscaling=AutoscalingSettings(
            enabled=True,
            min_instances=1,
            max_instances=4,
            metric="invocations_per_instance",
            target_value=30.0,
            scale_in_cooldown_seconds=600,
            scale_out_cooldown_seconds=120,
        ),
        retrain_threshold=1000,
        retrain_schedule_minutes=24 * 60,
        gate_policy=_GATE_POLICY,
        execution_timeout_hours=12,
        log_retention_days=30,
        noncurrent_version_retention_days=30,
        access_log_retention_days=90,
        quarantine_retention_days=30,
        # DynamoDB isolates transactions, so a file's record writes overlap their round trips.
        ingest=dataclasses.replace(DEFAULT_INGEST_SETTINGS, write_transactions_in_flight=4),
        powertools_layer_version=_POWERTOOLS_LAYER_VERSION,
        removal_policy="retain",
        termination_protection=False,
        console_domain_prefix="tuneloop-dev-console",
    )


def _prod() -> StageConfig:
    dev = _dev()
    return dataclasses.replace(
        dev,
        stage="prod",
        training_spot=False,
        training_spot_max_wait_minutes=0,
        # The same effective batch (4 rows) at 2048 tokens: 42.4 GiB at once, 18.8 GiB as 1
        # row x 4 accumulated on ml.g5.2xlarge (`tuneloop plan --stage prod`).
        training=dataclasses.replace(
            dev.training,
            max_steps=2000,
            learning_rate=1e-4,
            max_seq_length=2048,
            per_device_batch_size=1,
            gradient_accumulation_steps=4,
        ),
        evaluation=EvalSettings(mmlu_subset_size=5000, seed=0),
        alarms=AlarmThresholds(invocation_5xx_errors=3, model_latency_p99_ms=3000),
        retrain_threshold=5000,
        log_retention_days=365,
        noncurrent_version_retention_days=90,
        access_log_retention_days=365,
        quarantine_retention_days=90,
        termination_protection=True,
        console_domain_prefix="tuneloop-prod-console",
    )


def _local() -> StageConfig:
    """The local platform and demo: tiny numbers, the packaged 135M model, CPU."""
    return dataclasses.replace(
        _dev(),
        stage="local",
        base_model=LOCAL_BASE_MODEL,
        # Local jobs and endpoints run on this machine's CPU; name CPU instance types.
        training_instance_type="ml.m5.xlarge",
        serving_instance_type="ml.m5.large",
        training_spot=False,  # local jobs run on this machine
        training_spot_max_wait_minutes=0,
        # Enough for SmolLM2-135M to learn the example drops' facts (docs/training.md,
        # "The demo's learning"): 20 steps of 2 at 3e-3 take ~20 s on 2 cores.
        training=TrainingHyperparameters(
            max_steps=20,
            learning_rate=3e-3,
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            max_seq_length=128,
            per_device_batch_size=2,
            seed=0,
        ),
        # 50 items: what benchmarks/gate_power.py finds the 0.25 margin needs (docs/benchmarks.md).
        evaluation=EvalSettings(mmlu_subset_size=50, seed=0),
        alarms=AlarmThresholds(
            invocation_5xx_errors=1, model_latency_p99_ms=10_000, evaluation_periods=1
        ),
        endpoint_poll_seconds=2,
        # All at once with no baking: the demo's deployments serve as soon as they are up (the
        # local platform waits the configured seconds; docs/serving.md, "Rollout").
        rollout=RolloutSettings(baking_seconds=0, maximum_execution_timeout_seconds=600),
        # A low target, so a burst of requests shows the emulated scale-out (instances
        # recorded, no further serving process; docs/local-platform.md).
        autoscaling=AutoscalingSettings(
            enabled=True,
            min_instances=1,
            max_instances=4,
            metric="invocations_per_instance",
            target_value=10.0,
            scale_in_cooldown_seconds=60,
            scale_out_cooldown_seconds=30,
        ),
        retrain_threshold=5,
        retrain_schedule_minutes=60,
        gate_policy=_LOCAL_GATE_POLICY,
        execution_timeout_hours=1,
        log_retention_days=7,
        noncurrent_version_retention_days=1,
        access_log_retention_days=1,
        quarantine_retention_days=7,
        ingest=DEFAULT_INGEST_SETTINGS,  # one transaction at a time: moto does not isolate them
        removal_policy="destroy",
        termination_protection=False,
        console_domain_prefix="tuneloop-local-console",
        # One-minute windows so a test sees an alarm; the demo's and tests' short answers
        # always reach their few-token limit, so the truncation bound is off (1.0) locally.
        quality=QualitySettings(window_minutes=1, max_truncated_rate=1.0, max_empty_rate=0.5),
        # The demo's shifted traffic is a few dozen prompts against a few dozen FAQ records.
        drift_check=DriftCheckSettings(min_prompts=20),
    )


STAGES: Mapping[str, Callable[[], StageConfig]] = {"dev": _dev, "prod": _prod, "local": _local}


def load_stage_config(stage: str, overrides: Mapping[str, Any] | None = None) -> StageConfig:
    """The config of ``stage`` with context ``overrides`` (only :data:`OVERRIDABLE_FIELDS`).

    Override values arrive from CDK context, usually as strings.
    """
    factory = STAGES.get(stage)
    if factory is None:
        raise ConfigError(
            f"unknown stage {stage!r}{did_you_mean(stage, STAGES)}; "
            f"valid stages: {', '.join(sorted(STAGES))}"
        )
    config = factory()
    changes: dict[str, Any] = {}
    for key, raw in (overrides or {}).items():
        if key in ("base_model", "serving_backend"):
            changes[key] = str(raw)
        elif key == "console_domain_prefix":
            changes[key] = str(raw).strip()  # validated with the rest of the config
        elif key == "connectors":
            try:
                changes[key] = parse_connectors(raw)
            except ConnectorConfigError as error:
                raise ConfigError(f"stage {stage!r}: {error}") from None
        elif key == "ingest":
            try:
                changes[key] = settings_with(config.ingest, raw)
            except IngestSettingsError as error:
                raise ConfigError(f"stage {stage!r}: {error}") from None
        elif key == "gate_policy":
            changes[key] = _gate_policy_override(stage, raw)
        elif key == "rollout":
            try:
                changes[key] = config.rollout.with_overrides(raw)
            except RolloutSettingsError as error:
                raise ConfigError(f"stage {stage!r}: {error}") from None
        elif key == "drift_check":
            try:
                changes[key] = config.drift_check.with_overrides(raw)
            except DriftSettingsError as error:
                raise ConfigError(f"stage {stage!r}: {error}") from None
        elif key == "autoscaling":
            try:
                changes[key] = config.autoscaling.with_overrides(raw)
            except AutoscalingSettingsError as error:
                raise ConfigError(f"stage {stage!r}: {error}") from None
        elif key == "model_lines":
            try:
                changes[key] = ModelLines.parse(raw)
            except ModelLineError as error:
                raise ConfigError(f"stage {stage!r}: {error}") from None
        elif key == "retrain_threshold":
            try:
                changes[key] = int(str(raw).strip())
            except ValueError:
                raise ConfigError(
                    f"stage {stage!r}: retrain_threshold must be an integer, got {raw!r}"
                ) from None
        else:
            raise ConfigError(
                f"stage {stage!r}: {key!r} cannot be overridden"
                f"{did_you_mean(key, OVERRIDABLE_FIELDS)}; "
                f"overridable: {', '.join(OVERRIDABLE_FIELDS)}"
            )
    return dataclasses.replace(config, **changes) if changes else config


def _gate_policy_override(stage: str, raw: Any) -> GatePolicy:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"stage {stage!r}: gate_policy: not valid JSON ({exc})") from None
    try:
        return parse_policy(raw, source="gate_policy")
    except PolicyError as error:
        raise ConfigError(f"stage {stage!r}: {error}") from None


CONTEXT_KEYS = ("stage", *OVERRIDABLE_FIELDS)
"""Every context key of ours; any other key (not the CDK's own) is a mistake."""
# The CDK's own context: feature flags ("@aws-cdk/..."), the CLI's "aws:cdk:..." keys and
# cached lookups ("availability-zones:account=...") all contain "@" or ":".
_CDK_CONTEXT_KEYS = frozenset({"acknowledged-issue-numbers"})


def _is_cdk_key(key: str) -> bool:
    return key.startswith("@") or ":" in key or key in _CDK_CONTEXT_KEYS


def config_from_context(context: Mapping[str, Any]) -> StageConfig:
    """The stage config that ``app.py``'s context selects (``stage`` and overrides).

    A key that is neither ours nor the CDK's fails, naming the closest valid key: a typo
    such as ``retrain_thresold`` must not leave the stage's value silently in place.
    """
    ours = {key: value for key, value in context.items() if not _is_cdk_key(str(key))}
    unknown = sorted(key for key in ours if key not in CONTEXT_KEYS)
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"context key {key!r} is not a setting{did_you_mean(key, CONTEXT_KEYS)}; "
            f"the settings are {', '.join(CONTEXT_KEYS)}"
        )
    overrides = {key: value for key, value in ours.items() if key != "stage" and value is not None}
    return load_stage_config(str(ours.get("stage")), overrides)


__all__ = [
    "CONTEXT_KEYS",
    "LOCAL_BASE_MODEL",
    "OVERRIDABLE_FIELDS",
    "SERVING_BACKENDS",
    "STAGES",
    "AlarmThresholds",
    "ConfigError",
    "ContinuousEvaluationSettings",
    "DlcImage",
    "EvalSettings",
    "GatePolicy",
    "LmiOptions",
    "StageConfig",
    "SuitePolicy",
    "TrainingHyperparameters",
    "config_from_context",
    "load_stage_config",
]
