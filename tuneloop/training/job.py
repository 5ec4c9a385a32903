"""The Train step as a SageMaker training job: paths from the environment, outputs, failure.

Container contract (docs/contracts.md): data in ``SM_CHANNEL_TRAIN`` (and the optional
``SM_CHANNEL_REPLAY``), adapter (or whole model) + tokenizer +
``tuneloop_model.json`` (+ ``code/`` for the Hugging Face inference container) to
``SM_MODEL_DIR``, ``training_report.json`` to ``SM_OUTPUT_DATA_DIR``, and on error a one-line
reason in ``SM_OUTPUT_DIR/failure`` with exit code 1. Unset variables default to the
``/opt/ml/...`` paths SageMaker uses.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.training import distributed, hosts
from tuneloop.training.config import (
    TrainConfig,
    TrainingError,
    build_parser,
    parse_hyperparameters,
)

REPORT_FILE = "training_report.json"
LOSS_CURVE_FILE = "loss_curve.png"
DATA_CACHE = "data_cache"  # the channels as Arrow tables and their tokens (datasets)


@dataclass(frozen=True)
class JobPaths:
    train_channel: Path
    replay_channel: Path  # optional: earlier data to mix in (replay_fraction)
    model_dir: Path
    output_data_dir: Path
    output_dir: Path
    input_config_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> JobPaths:
        def get(name: str, default: str) -> Path:
            return Path(environ.get(name) or default)

        return cls(
            train_channel=get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"),
            replay_channel=get("SM_CHANNEL_REPLAY", "/opt/ml/input/data/replay"),
            model_dir=get("SM_MODEL_DIR", "/opt/ml/model"),
            output_data_dir=get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"),
            output_dir=get("SM_OUTPUT_DIR", "/opt/ml/output"),
            input_config_dir=get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"),
        )


def run(
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    serving_code: Sequence[Path] = (),
    script: Path | None = None,
) -> int:
    """Run one training job; 0 on success, 1 (and a failure file) on any error.

    ``serving_code`` lists files (``inference.py``) copied to
    ``<model dir>/code/`` together with the ``tuneloop`` package, so the Hugging Face
    inference container can serve the model straight from ``model.tar.gz``. On a multi-GPU
    instance (``SM_NUM_GPUS`` > 1) or a job of several instances (``SM_HOSTS``) ``script``
    (the entry point) is relaunched under torchrun.
    """
    env = os.environ if environ is None else environ
    paths = JobPaths.from_env(env)
    if any(arg in ("-h", "--help") for arg in argv):
        print(usage())
        return 0
    place = distributed.topology(env)
    try:
        config = parse_hyperparameters(argv, env, paths.input_config_dir)
        if script is not None and "LOCAL_RANK" not in env:  # not yet under torchrun
            job_hosts = hosts.cluster(env, paths.input_config_dir)
            if distributed.should_relaunch(env, job_hosts):
                return _relaunch(script, argv, env, paths, job_hosts)
        _train_and_save(config, paths, serving_code, main_process=place.is_main)
        return 0
    except Exception as exc:
        if not isinstance(exc, ValueError):  # an unexpected bug: keep the traceback
            traceback.print_exc(file=sys.stderr)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        if place.is_main:  # one failure file per job, however many processes fail
            _write_failure(paths.output_dir, reason)
        print(f"train failed: {reason}", file=sys.stderr, flush=True)
        return 1
    finally:
        distributed.stop(place)


def _relaunch(
    script: Path,
    argv: Sequence[str],
    env: Mapping[str, str],
    paths: JobPaths,
    job_hosts: hosts.Cluster,
) -> int:
    code = distributed.relaunch(script, argv, env, job_hosts)
    if code != 0 and not (paths.output_dir / "failure").is_file():
        # A process other than rank 0 failed (rank 0 writes its own reason; on the other
        # instances, which hold no rank 0, this is the instance's reason).
        _write_failure(paths.output_dir, f"a training process exited with code {code}")
    return 0 if code == 0 else 1


def usage() -> str:
    return build_parser().format_help()


def _train_and_save(
    config: TrainConfig, paths: JobPaths, serving_code: Sequence[Path], *, main_process: bool
) -> None:
    # Imported here so --help and argument errors do not pay for importing torch.
    from tuneloop.models.catalog import resolve_model
    from tuneloop.models.loading import write_model_metadata
    from tuneloop.training.data import has_records, mix_replay, read_channel
    from tuneloop.training.loop import train
    from tuneloop.training.report_outputs import write_loss_curve

    def log(line: str) -> None:
        if main_process:
            print(line, flush=True)

    import datasets

    datasets.disable_progress_bars()  # a bar per map batch is noise in the job's log
    cache_dir = data_cache_dir(config, paths)
    dataset = read_channel(paths.train_channel, cache_dir=cache_dir)
    log(
        f"train: {len(dataset.records)} records from {len(dataset.files)} file(s), "
        f"sha256 {dataset.sha256[:12]}; base model {config.base_model}"
    )
    if config.replay_fraction > 0:
        if has_records(paths.replay_channel):
            replay = read_channel(paths.replay_channel, "replay", cache_dir=cache_dir)
            mixed = mix_replay(dataset, replay, config.replay_fraction, config.seed)
            log(
                f"train: mixed in {len(mixed.records) - len(dataset.records)} of "
                f"{len(replay.records)} replay records (replay_fraction {config.replay_fraction})"
            )
            dataset = mixed
        else:
            # The first run of a platform has no earlier data to replay (PrepareDataset then
            # writes an empty replay file, or the channel is absent).
            log(f"train: replay_fraction set but no replay records in {paths.replay_channel}")
    result = train(config, dataset, log)
    if not main_process:
        return  # rank 0 writes the model and the report

    paths.model_dir.mkdir(parents=True, exist_ok=True)
    # LoRA: the adapter only; full fine-tuning: the whole model (config.json + weights).
    result.model.save_pretrained(paths.model_dir)
    result.tokenizer.save_pretrained(paths.model_dir)
    extra: dict[str, Any] = {
        "data_sha256": dataset.sha256,
        "data_manifest_sha256": dataset.manifest_sha256(),
        "adapter": config.finetune_method == "lora",
        "finetune_method": config.finetune_method,
        # Register reads it: the LMI backend serves LoRA adapters for some families only.
        "model_type": str(getattr(result.model.config, "model_type", "")),
    }
    if config.init_adapter:
        extra["continued_from"] = config.init_adapter
    if config.model_version:
        extra["model_version"] = config.model_version
    write_model_metadata(paths.model_dir, _portable_ref(config.base_model, resolve_model), **extra)
    _copy_serving_code(paths.model_dir / "code", serving_code)

    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    report_path = paths.output_data_dir / REPORT_FILE
    report = result.report
    curve = write_loss_curve(
        report["losses"],
        paths.output_data_dir / LOSS_CURVE_FILE,
        title=f"training loss {config.model_version}".strip(),
    )
    report["loss_curve"] = curve.name
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log(
        f"train: done, {report['steps']} steps, final loss {report['final_loss']:.4f}, "
        f"{report['tokens_per_second']:.0f} tokens/s, {report['wall_seconds']:.1f}s; "
        f"adapter in {paths.model_dir}"
    )


def data_cache_dir(config: TrainConfig, paths: JobPaths) -> Path:
    """Where the channels' Arrow tables and tokens are cached.

    Inside the checkpoint dir, which SageMaker syncs to S3 and restores on a spot restart, so
    a resumed job reads the tokens instead of tokenizing again; where that dir cannot be
    created (a local run without /opt/ml), beside the job's output (not uploaded).
    """
    for base in (Path(config.checkpoint_dir), paths.output_dir):
        try:
            (base / DATA_CACHE).mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        return base / DATA_CACHE
    raise TrainingError(
        f"cannot create {DATA_CACHE} in {config.checkpoint_dir} or {paths.output_dir}"
    )


def _portable_ref(ref: str, resolve: Any) -> str:
    """Named references stay as given; a local folder is stored absolute (cwd may change)."""
    if ref.startswith(("hf://", "s3://")) or ("/" not in ref and not Path(ref).is_dir()):
        return ref
    return str(resolve(ref))


def _copy_serving_code(code_dir: Path, files: Sequence[Path]) -> None:
    if not files:
        return
    import tuneloop

    code_dir.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy2(file, code_dir / Path(file).name)
    package = Path(tuneloop.__file__).parent
    target = code_dir / "tuneloop"
    shutil.rmtree(target, ignore_errors=True)
    # The local platform never runs on AWS; caches are not code.
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("local", "__pycache__"))


def _write_failure(output_dir: Path, reason: str) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(reason + "\n", encoding="utf-8")
    except OSError as exc:  # still exit 1 with the message on stderr
        print(f"train: cannot write failure file in {output_dir}: {exc}", file=sys.stderr)
