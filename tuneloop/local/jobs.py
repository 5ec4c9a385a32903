"""Runs SageMaker training jobs as local processes under the container contract.

The job's code is the ``sagemaker_submit_directory`` tarball it names (the same S3 asset
SageMaker downloads on AWS); its channels are downloaded from the emulator's S3; the entry
point runs with the ``SM_*`` environment and ``/opt/ml`` layout mapped into a job folder;
``model.tar.gz`` and ``output.tar.gz`` are uploaded where SageMaker puts them.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.local.iam.credentials import Credentials
from tuneloop.local.s3util import (
    download_object,
    download_prefix,
    parse_s3_uri,
    s3_client,
    upload_file,
)


@dataclass
class JobSpec:
    name: str
    hyperparameters: dict[str, str]
    channels: dict[str, str]  # channel name → S3 URI
    output_path: str
    environment: dict[str, str] = field(default_factory=dict)
    credentials: Credentials | None = None  # the job's execution role session


@dataclass(frozen=True)
class JobOutcome:
    succeeded: bool
    failure_reason: str = ""


StatusCallback = Callable[[JobOutcome], None]
LogCallback = Callable[[str, str], None]  # (job name, line)


def _plain(value: str) -> str:
    """SageMaker SDKs JSON-encode hyperparameter values; accept both forms."""
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        return value
    return decoded if isinstance(decoded, str) else value


class LocalJobRunner:
    def __init__(
        self,
        work_dir: Path,
        environment: dict[str, str],
        on_log: LogCallback | None = None,
    ) -> None:
        self._work_dir = work_dir / "jobs"
        self._environment = environment
        self._on_log = on_log
        # One job at a time: a laptop has the CPU for one model at a time.
        self._slot = threading.Lock()

    def start(self, spec: JobSpec, on_done: StatusCallback) -> threading.Thread:
        thread = threading.Thread(
            target=self._run_guarded, args=(spec, on_done), name=f"job-{spec.name}", daemon=True
        )
        thread.start()
        return thread

    def _run_guarded(self, spec: JobSpec, on_done: StatusCallback) -> None:
        with self._slot:
            try:
                outcome = self.run(spec)
            except Exception as exc:  # an emulator fault must still end the job
                outcome = JobOutcome(False, f"local job runner error: {exc}")
        on_done(outcome)

    def run(self, spec: JobSpec) -> JobOutcome:
        root = self._work_dir / spec.name
        paths = {
            "code": root / "code",
            "input": root / "input",
            "config": root / "input" / "config",
            "model": root / "model",
            "output": root / "output",
            "output_data": root / "output" / "data",
            "checkpoints": root / "checkpoints",
        }
        for path in paths.values():
            path.mkdir(parents=True, exist_ok=True)

        hps = {key: _plain(value) for key, value in spec.hyperparameters.items()}
        program = hps.get("sagemaker_program")
        submit_dir = hps.get("sagemaker_submit_directory")
        if not program or not submit_dir:
            return JobOutcome(
                False,
                "hyperparameters sagemaker_program and "
                "sagemaker_submit_directory are required in script mode",
            )
        s3 = s3_client(spec.credentials)
        self._fetch_code(s3, submit_dir, paths["code"])

        channel_env = {}
        for channel, uri in spec.channels.items():
            target = paths["input"] / "data" / channel
            download_prefix(uri, target, s3)
            channel_env[f"SM_CHANNEL_{channel.upper()}"] = str(target)

        user_hps = {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
        (paths["config"] / "hyperparameters.json").write_text(json.dumps(hps), encoding="utf-8")
        env = dict(self._environment)
        env.update(spec.environment)
        env.update(spec.credentials.environment() if spec.credentials else {})
        env.update(channel_env)
        env.update(
            {
                "PYTHONPATH": str(paths["code"]),
                "SM_MODEL_DIR": str(paths["model"]),
                "SM_OUTPUT_DIR": str(paths["output"]),
                "SM_OUTPUT_DATA_DIR": str(paths["output_data"]),
                "SM_INPUT_DIR": str(paths["input"]),
                "SM_INPUT_CONFIG_DIR": str(paths["config"]),
                "SM_CHANNELS": json.dumps(sorted(spec.channels)),
                "SM_HPS": json.dumps(user_hps),
                "SM_NUM_GPUS": "0",
                "SM_NUM_CPUS": str(os.cpu_count() or 1),
                "SM_CURRENT_HOST": "algo-1",
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_USER_ENTRY_POINT": program,
                "SM_TRAINING_JOB_NAME": spec.name,
            }
        )
        # CheckpointConfig.LocalPath is /opt/ml/checkpoints on AWS; map it into the job folder.
        args = [sys.executable, program, "--checkpoint_dir", str(paths["checkpoints"])]
        for key, value in user_hps.items():
            args += [f"--{key}", value]

        log_path = root / "job.log"
        with open(log_path, "w", encoding="utf-8") as log:
            process = subprocess.Popen(
                args,
                cwd=paths["code"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            assert process.stdout is not None
            tail: collections.deque[str] = collections.deque(maxlen=20)
            for line in process.stdout:
                log.write(line)
                tail.append(line.rstrip())
                if self._on_log:
                    self._on_log(spec.name, line.rstrip())
            code = process.wait()

        if code != 0:
            failure_file = paths["output"] / "failure"
            reason = (
                failure_file.read_text(encoding="utf-8").strip()
                if failure_file.exists()
                else "\n".join(list(tail)[-5:])
            )
            return JobOutcome(False, f"AlgorithmError: {reason} (exit code {code}; log {log_path})")

        prefix = f"{spec.output_path.rstrip('/')}/{spec.name}/output"
        upload_file(_tar(paths["model"], root / "model.tar.gz"), f"{prefix}/model.tar.gz", s3)
        upload_file(
            _tar(paths["output_data"], root / "output.tar.gz"), f"{prefix}/output.tar.gz", s3
        )
        return JobOutcome(True)

    @staticmethod
    def _fetch_code(s3: Any, submit_dir: str, target: Path) -> None:
        bucket, key = parse_s3_uri(submit_dir)
        archive = target.parent / "sourcedir.tar.gz"
        download_object(s3, bucket, key, archive)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")


def _tar(source: Path, destination: Path) -> Path:
    with tarfile.open(destination, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(source)), recursive=False)
    return destination


def describe_channels(input_data_config: list[dict[str, Any]]) -> dict[str, str]:
    """Channel name → S3 URI from a CreateTrainingJob InputDataConfig."""
    channels = {}
    for channel in input_data_config or []:
        uri = channel.get("DataSource", {}).get("S3DataSource", {}).get("S3Uri")
        if uri:
            channels[channel["ChannelName"]] = uri
    return channels
