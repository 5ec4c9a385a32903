"""Runs SageMaker training jobs as local processes under the container contract.

The job's code is the ``sagemaker_submit_directory`` tarball it names (the same S3 asset
SageMaker downloads on AWS); its channels are downloaded from the emulator's S3; the entry
point runs with the ``SM_*`` environment and ``/opt/ml`` layout mapped into a job folder;
``model.tar.gz`` and ``output.tar.gz`` are uploaded where SageMaker puts them.

A job of ``ResourceConfig.InstanceCount`` N > 1 runs N "hosts" ``algo-1``..``algo-N``, one
entry point process each with its own ``/opt/ml`` folder (``<job>/algo-i/``), every channel
(SageMaker's ``FullyReplicated``) and ``resourceconfig.json``; they rendezvous on loopback
(``TUNELOOP_MASTER_ADDR``/``TUNELOOP_MASTER_PORT``, since ``algo-1`` does not resolve here).
Only the leader's (``algo-1``'s) model and output are uploaded: the trainer writes them on
global rank 0 only, which is on ``algo-1``. The first host to fail fails the job; the others
are stopped.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Sequence
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

# SageMaker's name for the single group of a homogeneous cluster (resourceconfig.json).
_GROUP = "homogeneousCluster"
# After one host fails, the others get SIGTERM (what StopTrainingJob sends) and this long
# to exit before SIGKILL: torchrun needs a moment to stop its ranks.
STOP_GRACE_SECONDS = 60.0
# The trainer's rendezvous overrides (tuneloop.training.distributed), for hosts on loopback.
_MASTER_ADDR_ENV = "TUNELOOP_MASTER_ADDR"
_MASTER_PORT_ENV = "TUNELOOP_MASTER_PORT"


@dataclass
class JobSpec:
    name: str
    hyperparameters: dict[str, str]
    channels: dict[str, str]  # channel name → S3 URI
    output_path: str
    environment: dict[str, str] = field(default_factory=dict)
    credentials: Credentials | None = None  # the job's execution role session
    instance_count: int = 1  # ResourceConfig.InstanceCount: hosts algo-1..algo-N
    instance_type: str = "local"  # ResourceConfig.InstanceType (resourceconfig.json)


@dataclass(frozen=True)
class JobOutcome:
    succeeded: bool
    failure_reason: str = ""


StatusCallback = Callable[[JobOutcome], None]
LogCallback = Callable[[str, str], None]  # (job name, line; "[algo-N] line" on N > 1 hosts)


@dataclass
class _Host:
    """One instance of the job: its name, its /opt/ml folder and, once started, its process."""

    name: str
    root: Path
    paths: dict[str, Path]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=20))
    log_error: Exception | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "job.log"


def host_names(count: int) -> list[str]:
    """SageMaker's host names for ``count`` instances; the first is the leader."""
    return [f"algo-{index}" for index in range(1, count + 1)]


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
        hps = {key: _plain(value) for key, value in spec.hyperparameters.items()}
        program = hps.get("sagemaker_program")
        submit_dir = hps.get("sagemaker_submit_directory")
        if not program or not submit_dir:
            return JobOutcome(
                False,
                "hyperparameters sagemaker_program and "
                "sagemaker_submit_directory are required in script mode",
            )
        if spec.instance_count < 1:
            # 0 is valid on AWS only with ResourceConfig.InstanceGroups, not emulated here.
            return JobOutcome(
                False, f"ResourceConfig.InstanceCount must be at least 1, got {spec.instance_count}"
            )
        root = self._work_dir / spec.name
        names = host_names(spec.instance_count)
        user_hps = {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
        s3 = s3_client(spec.credentials)
        hosts = []
        for name in names:
            # Each instance downloads the code and every channel (FullyReplicated) itself.
            host = _host_folders(name, root if len(names) == 1 else root / name)
            self._fetch_code(s3, submit_dir, host.paths["code"])
            channel_env = _download_channels(spec.channels, host.paths["input"], s3)
            host.env = self._host_environment(spec, host, names, channel_env, program, user_hps)
            _write_config(host, hps, names, spec.instance_type)
            hosts.append(host)

        hp_args = [arg for key, value in user_hps.items() for arg in (f"--{key}", value)]
        launch = [sys.executable, program]
        outcome = self._run_hosts(spec, hosts, launch, hp_args, _rendezvous_environment(len(hosts)))
        if not outcome.succeeded:
            return outcome
        for other in hosts[1:]:
            self._note_not_uploaded(spec, other)
        prefix = f"{spec.output_path.rstrip('/')}/{spec.name}/output"
        _upload_outputs(hosts[0], root, prefix, s3)  # the leader's, as the docstring says
        return JobOutcome(True)

    def _host_environment(
        self,
        spec: JobSpec,
        host: _Host,
        names: Sequence[str],
        channel_env: dict[str, str],
        program: str,
        user_hps: dict[str, str],
    ) -> dict[str, str]:
        paths = host.paths
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
                "SM_CURRENT_HOST": host.name,
                "SM_HOSTS": json.dumps(list(names)),
                "SM_USER_ENTRY_POINT": program,
                "SM_TRAINING_JOB_NAME": spec.name,
            }
        )
        interface = _loopback_interface()
        if len(names) > 1 and interface:
            # The hosts reach each other on loopback; the trainer binds gloo/NCCL to it.
            env["SM_NETWORK_INTERFACE_NAME"] = interface
        return env

    def _run_hosts(
        self,
        spec: JobSpec,
        hosts: Sequence[_Host],
        launch: list[str],
        hp_args: list[str],
        rendezvous: dict[str, str],
    ) -> JobOutcome:
        """Start every host, wait for all; the first to fail fails the job, the others stop."""
        exits: queue.Queue[tuple[_Host, int]] = queue.Queue()
        log_lock = threading.Lock()
        pumps = []
        try:
            for host in hosts:
                # CheckpointConfig.LocalPath is /opt/ml/checkpoints on AWS: in the folder.
                checkpoints = ["--checkpoint_dir", str(host.paths["checkpoints"])]
                host.process = subprocess.Popen(
                    [*launch, *checkpoints, *hp_args],
                    cwd=host.paths["code"],
                    env={**host.env, **rendezvous},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    bufsize=1,
                )
                tag = f"[{host.name}] " if len(hosts) > 1 else ""
                pump = threading.Thread(
                    target=self._pump,
                    args=(spec.name, host, tag, exits, log_lock),
                    name=f"job-{spec.name}-{host.name}",
                    daemon=True,
                )
                pump.start()
                pumps.append(pump)
        except BaseException:
            _stop(hosts)  # the hosts already started would wait for the missing ones
            raise

        failed: tuple[_Host, int] | None = None
        stopping: threading.Timer | None = None
        for _ in hosts:
            host, code = exits.get()
            if code != 0 and failed is None:
                failed = (host, code)
                stopping = _stop([other for other in hosts if other is not host])
        for pump in pumps:
            pump.join()
        if stopping is not None:
            stopping.cancel()
        for host in hosts:
            if host.log_error is not None:
                raise host.log_error
        return JobOutcome(True) if failed is None else _failure(*failed)

    def _pump(
        self,
        job: str,
        host: _Host,
        tag: str,
        exits: queue.Queue[tuple[_Host, int]],
        log_lock: threading.Lock,
    ) -> None:
        """Copy the host's output to its log (and the log callback), then report its exit."""
        process = host.process
        assert process is not None and process.stdout is not None
        try:
            with open(host.log_path, "w", encoding="utf-8") as log:
                for line in process.stdout:
                    log.write(line)
                    host.tail.append(line.rstrip())
                    if self._on_log:
                        with log_lock:  # one line at a time from several hosts
                            self._on_log(job, tag + line.rstrip())
        except Exception as exc:  # a broken log consumer must not leave the host running
            host.log_error = exc
            process.kill()
        finally:
            exits.put((host, process.wait()))

    def _note_not_uploaded(self, spec: JobSpec, host: _Host) -> None:
        """Say so when a non-leader wrote outputs: they are not uploaded (SageMaker would
        add every instance's to the archives). The trainer writes them on algo-1 only."""
        written = [
            path
            for folder in (host.paths["model"], host.paths["output_data"])
            for path in folder.rglob("*")
            if path.is_file()
        ]
        if written and self._on_log:
            self._on_log(
                spec.name,
                f"[local] {host.name} wrote {len(written)} file(s) to its model/output dir; "
                "only algo-1's are uploaded",
            )

    @staticmethod
    def _fetch_code(s3: Any, submit_dir: str, target: Path) -> None:
        bucket, key = parse_s3_uri(submit_dir)
        archive = target.parent / "sourcedir.tar.gz"
        download_object(s3, bucket, key, archive)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")


def _host_folders(name: str, root: Path) -> _Host:
    """The host's /opt/ml tree under ``root`` (created)."""
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
    return _Host(name, root, paths)


def _download_channels(channels: dict[str, str], input_dir: Path, s3: Any) -> dict[str, str]:
    """Every channel into ``input/data/<channel>``; their ``SM_CHANNEL_*`` variables."""
    channel_env = {}
    for channel, uri in channels.items():
        target = input_dir / "data" / channel
        download_prefix(uri, target, s3)
        channel_env[f"SM_CHANNEL_{channel.upper()}"] = str(target)
    return channel_env


def _write_config(host: _Host, hps: dict[str, str], names: Sequence[str], kind: str) -> None:
    """hyperparameters.json and resourceconfig.json, as SageMaker writes them."""
    config = host.paths["config"]
    (config / "hyperparameters.json").write_text(json.dumps(hps), encoding="utf-8")
    resource = {
        "current_host": host.name,
        "current_instance_type": kind,
        "current_group_name": _GROUP,
        "hosts": list(names),
        "instance_groups": [
            {"instance_group_name": _GROUP, "instance_type": kind, "hosts": list(names)}
        ],
    }
    interface = _loopback_interface()
    if interface:
        resource["network_interface_name"] = interface
    (config / "resourceconfig.json").write_text(json.dumps(resource), encoding="utf-8")


def _rendezvous_environment(count: int) -> dict[str, str]:
    """Where the hosts meet: algo-1's torchrun on loopback, at a port free right now (picked
    just before the launch so that another process is unlikely to take it first)."""
    if count == 1:
        return {}
    return {_MASTER_ADDR_ENV: "127.0.0.1", _MASTER_PORT_ENV: str(_free_port())}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _loopback_interface() -> str | None:
    """The loopback interface's name (``lo`` on Linux, ``lo0`` on macOS), if found."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((name for name in names if name.startswith("lo")), None)


def _stop(hosts: Sequence[_Host]) -> threading.Timer:
    """SIGTERM every host still running; SIGKILL those left after the grace period."""
    running = [h.process for h in hosts if h.process is not None and h.process.poll() is None]
    for process in running:
        process.terminate()

    def kill() -> None:
        for process in running:
            if process.poll() is None:
                process.kill()

    timer = threading.Timer(STOP_GRACE_SECONDS, kill)
    timer.daemon = True
    timer.start()
    return timer


def _failure(host: _Host, code: int) -> JobOutcome:
    """The failed host's reason: its failure file, else the end of its log."""
    failure_file = host.paths["output"] / "failure"
    reason = (
        failure_file.read_text(encoding="utf-8").strip()
        if failure_file.exists()
        else "\n".join(list(host.tail)[-5:])
    )
    return JobOutcome(
        False,
        f"AlgorithmError: {reason} (host {host.name}, exit code {code}; log {host.log_path})",
    )


def _upload_outputs(leader: _Host, root: Path, prefix: str, s3: Any) -> None:
    """The leader's model dir and output/data as ``model.tar.gz`` and ``output.tar.gz``."""
    for folder, archive in (("model", "model.tar.gz"), ("output_data", "output.tar.gz")):
        upload_file(_tar(leader.paths[folder], root / archive), f"{prefix}/{archive}", s3)


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
