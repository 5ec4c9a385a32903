"""Multi-node training: SageMaker's host list, the torchrun command each instance runs, and
two "instances" on loopback (2 nodes x 1 gloo process) against one process of the same
effective batch, uninterrupted and through a spot reclaim of the second instance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from test_training_correctness import varied_records
from test_training_incremental import run_job, sm_env
from tiny_models import SAGEMAKER_JOB_PATHS, make_tiny_causal_lm

from training_containers.train import main
from tuneloop.training import distributed
from tuneloop.training.checkpoint import CHECKPOINT_FILE
from tuneloop.training.hosts import Cluster, HostsError, cluster

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINT = REPO / "training_containers/train.py"
HOSTS = ["algo-1", "algo-2"]
COMMON = ["--learning_rate", "0.01", "--per_device_batch_size", "2", "--max_seq_length", "64"]
STEPS = 24


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def one_process(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One process accumulating 4 micro-batches: the effective batch of 2 nodes x 2."""
    root = tmp_path_factory.mktemp("one_process")
    with pytest.MonkeyPatch.context() as monkeypatch:
        sm_env(monkeypatch, root, varied_records())
        for name in ("SM_NUM_GPUS", "SM_HOSTS", "SM_CURRENT_HOST"):
            monkeypatch.delenv(name, raising=False)
        report = run_job(
            base_model,
            root,
            *COMMON,
            "--max_steps",
            str(STEPS),
            "--gradient_accumulation_steps",
            "4",
        )
    report["root"] = root
    return report


# ---- the host list -----------------------------------------------------------------------


def test_hosts_come_from_sm_hosts_and_the_current_host(tmp_path: Path) -> None:
    env = {"SM_HOSTS": json.dumps(["algo-1", "algo-2", "algo-3"]), "SM_CURRENT_HOST": "algo-2"}
    found = cluster(env, tmp_path)
    assert found.hosts == ("algo-1", "algo-2", "algo-3")
    assert (found.nodes, found.node_rank, found.multi_node) == (3, 1, True)


def test_hosts_fall_back_to_resourceconfig_json(tmp_path: Path) -> None:
    (tmp_path / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-2", "hosts": HOSTS, "network_interface_name": "eth0"})
    )
    found = cluster({}, tmp_path)
    assert found == Cluster(("algo-1", "algo-2"), "algo-2", "eth0")
    assert found.node_rank == 1


def test_no_host_information_is_one_local_host(tmp_path: Path) -> None:
    found = cluster({}, tmp_path)
    assert (found.hosts, found.current_host, found.multi_node) == (("algo-1",), "algo-1", False)


@pytest.mark.parametrize(
    ("sm_hosts", "message"),
    [
        ("algo-1,algo-2", "SM_HOSTS must be a JSON list of host names"),
        ('"algo-1"', "SM_HOSTS must be a non-empty list of host names"),
        ("[]", "SM_HOSTS must be a non-empty list of host names"),
        ('["algo-1", 2]', "SM_HOSTS must hold non-empty host names, got 2"),
        ('["algo-1", "algo-1"]', "SM_HOSTS lists 'algo-1' more than once"),
    ],
)
def test_malformed_sm_hosts_fails_naming_the_variable(
    tmp_path: Path, sm_hosts: str, message: str
) -> None:
    with pytest.raises(HostsError, match=message):
        cluster({"SM_HOSTS": sm_hosts, "SM_CURRENT_HOST": "algo-1"}, tmp_path)


def test_current_host_outside_the_list_fails_naming_both(tmp_path: Path) -> None:
    env = {"SM_HOSTS": json.dumps(HOSTS), "SM_CURRENT_HOST": "algo-3"}
    with pytest.raises(HostsError, match=r"'algo-3' is not in the job's hosts \['algo-1'"):
        cluster(env, tmp_path)


def test_several_hosts_without_a_current_host_fail(tmp_path: Path) -> None:
    with pytest.raises(HostsError, match="lists 2 hosts but neither SM_CURRENT_HOST"):
        cluster({"SM_HOSTS": json.dumps(HOSTS)}, tmp_path)


def test_unreadable_resourceconfig_fails_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "resourceconfig.json").write_text("{not json")
    with pytest.raises(HostsError, match=r"resourceconfig\.json is not valid JSON"):
        cluster({}, tmp_path)


def test_bad_host_list_fails_the_job_with_a_failure_file_before_torchrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, sub in SAGEMAKER_JOB_PATHS.items():
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("SM_HOSTS", json.dumps(HOSTS))
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-9")
    monkeypatch.setattr(subprocess, "Popen", _no_process)
    assert main(["--base_model", "unused", "--max_steps", "1"]) == 1
    reason = (tmp_path / "output/failure").read_text()
    assert reason.startswith("HostsError: current host 'algo-9' is not in the job's hosts")


def _no_process(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("no process may start for a malformed host list")


# ---- the launch --------------------------------------------------------------------------


def test_single_instance_keeps_the_standalone_launch() -> None:
    command = distributed.torchrun_command(
        Path("train.py"), ["--max_steps", "3"], {"SM_NUM_GPUS": "4"}, Cluster()
    )
    assert command[1:] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=4",
        "train.py",
        "--max_steps",
        "3",
    ]


def test_each_instance_runs_torchrun_as_its_node_of_one_static_rendezvous() -> None:
    hosts = Cluster(("algo-1", "algo-2", "algo-3"), "algo-3")
    command = distributed.torchrun_command(
        Path("train.py"), ["--seed", "1"], {"SM_NUM_GPUS": "8"}, hosts
    )
    flags = command[3 : command.index("train.py")]
    assert flags == [
        "--nnodes=3",
        "--node_rank=2",
        "--rdzv_backend=static",
        "--master_addr=algo-1",
        f"--master_port={distributed.MASTER_PORT}",
        "--nproc_per_node=8",
    ]
    assert command[command.index("train.py") :] == ["train.py", "--seed", "1"]


def test_master_address_and_port_can_be_overridden() -> None:
    env = {distributed.MASTER_ADDR_ENV: "127.0.0.1", distributed.MASTER_PORT_ENV: "31337"}
    assert distributed.master_endpoint(env, Cluster(tuple(HOSTS), "algo-2")) == ("127.0.0.1", 31337)


@pytest.mark.parametrize("port", ["http", "0", "70000"])
def test_bad_master_port_fails_naming_the_variable(port: str) -> None:
    with pytest.raises(distributed.LaunchError, match="TUNELOOP_MASTER_PORT must be a TCP port"):
        distributed.master_endpoint({distributed.MASTER_PORT_ENV: port}, Cluster(tuple(HOSTS)))


def test_one_gpu_instances_of_a_multi_node_job_relaunch_too() -> None:
    two_nodes = Cluster(tuple(HOSTS), "algo-2")
    assert distributed.should_relaunch({"SM_NUM_GPUS": "1"}, two_nodes)
    assert not distributed.should_relaunch({"SM_NUM_GPUS": "1"}, Cluster())
    assert distributed.should_relaunch({"SM_NUM_GPUS": "2"}, Cluster())
    # A process torchrun started never relaunches again.
    assert not distributed.should_relaunch({"SM_NUM_GPUS": "1", "LOCAL_RANK": "0"}, two_nodes)


def test_relaunch_binds_the_process_group_to_sagemakers_interface(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[dict[str, str]] = []

    class Finished:
        def __init__(self, command: list[str], env: dict[str, str]) -> None:
            started.append(env)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Finished)
    hosts = Cluster(tuple(HOSTS), "algo-1", "eth7")
    assert distributed.relaunch(Path("train.py"), [], {"SM_NUM_GPUS": "1"}, hosts) == 0
    assert started[0]["NCCL_SOCKET_IFNAME"] == started[0]["GLOO_SOCKET_IFNAME"] == "eth7"


# ---- two instances on loopback ------------------------------------------------------------


def test_two_node_run_matches_one_process_of_the_same_batch(
    base_model: Path, tmp_path: Path, one_process: dict[str, Any]
) -> None:
    """2 instances x 1 process, each accumulating 2 micro-batches, equal 1 process
    accumulating 4: same losses step for step, same adapter; only rank 0 (on the first host)
    writes the model, the report and checkpoints."""
    port = _free_port()
    nodes = [
        _start_node(base_model, tmp_path, host, port, "--max_steps", str(STEPS)) for host in HOSTS
    ]
    outputs = [_finish(node) for node in nodes]
    first, second = (tmp_path / host for host in HOSTS)

    report = json.loads((first / "output/data/training_report.json").read_text())
    assert report["processes"] == 2
    assert report["examples_seen"] == one_process["examples_seen"]
    assert report["tokens"] == one_process["tokens"]
    assert len(report["losses"]) == len(one_process["losses"]) == STEPS
    delta = max(abs(a - b) for a, b in zip(report["losses"], one_process["losses"], strict=True))
    print(f"two nodes x 1 process vs one process: max |dloss| {delta:.2e} over {STEPS} steps")
    assert delta < 1e-5
    _assert_same_adapter(first / "model", one_process["root"] / "model")
    assert "node 2 of 2 (algo-2)" in outputs[1]
    # Rank 1 lives on algo-2: nothing of the job's outputs is written there.
    assert not (second / "model").exists()
    assert not (second / "output/data/training_report.json").exists()
    assert not (second / "checkpoints" / CHECKPOINT_FILE).exists()
    assert not (first / "output/failure").exists() and not (second / "output/failure").exists()


def test_sigterm_on_the_second_instance_stops_every_rank_at_one_step_and_resumes_exactly(
    base_model: Path, tmp_path: Path, one_process: dict[str, Any]
) -> None:
    """A spot reclaim signals each instance's entry point; here only algo-2's, the harder
    case. Its stop vote reaches rank 0 on algo-1: both stop after the same step, rank 0
    checkpoints, and the restarted job (SageMaker restores the checkpoint S3 prefix on every
    instance) finishes with the uninterrupted losses."""
    port = _free_port()
    args = ("--max_steps", str(STEPS))
    first = _start_node(base_model, tmp_path, "algo-1", port, *args, watch=True)
    second = _start_node(base_model, tmp_path, "algo-2", port, *args)
    assert first.stdout is not None
    seen: list[str] = []
    for line in first.stdout:
        seen.append(line)
        if line.startswith("step 2/"):
            second.send_signal(signal.SIGTERM)
            break
    outputs = ["".join(seen) + _finish(first, expect=1), _finish(second, expect=1)]
    root_1, root_2 = (tmp_path / host for host in HOSTS)
    reason = (root_1 / "output/failure").read_text()
    assert reason.startswith("TrainingInterruptedError: stopped after step "), outputs[0]
    stopped = int(reason.split("after step ")[1].split()[0])
    assert 2 <= stopped < STEPS
    assert (root_2 / "output/failure").read_text().startswith("a training process exited")
    checkpoint = root_1 / "checkpoints" / CHECKPOINT_FILE
    assert checkpoint.is_file() and not (root_2 / "checkpoints" / CHECKPOINT_FILE).exists()

    # The restart: each instance starts with the checkpoint prefix SageMaker synced to S3.
    shutil.copy2(checkpoint, root_2 / "checkpoints" / CHECKPOINT_FILE)
    for root in (root_1, root_2):
        (root / "output/failure").unlink()
    port = _free_port()
    nodes = [_start_node(base_model, tmp_path, host, port, *args, fresh=False) for host in HOSTS]
    for node in nodes:
        _finish(node)
    report = json.loads((root_1 / "output/data/training_report.json").read_text())
    assert report["resumed_from_step"] == stopped
    assert report["losses"] == pytest.approx(one_process["losses"], abs=1e-5)
    _assert_same_adapter(root_1 / "model", one_process["root"] / "model")


def _start_node(
    base_model: Path,
    tmp_path: Path,
    host: str,
    port: int,
    *extra: str,
    watch: bool = False,
    fresh: bool = True,
) -> subprocess.Popen[str]:
    """The entry point as SageMaker starts it on ``host`` (its own /opt/ml tree), with node 0
    reached on loopback because algo-1 does not resolve here."""
    root = tmp_path / host
    if fresh:
        channel = root / SAGEMAKER_JOB_PATHS["SM_CHANNEL_TRAIN"]
        channel.mkdir(parents=True)
        channel.joinpath("train.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in varied_records()), encoding="utf-8"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TUNELOOP_"))}
    env |= {name: str(root / sub) for name, sub in SAGEMAKER_JOB_PATHS.items()}
    env |= {
        "SM_HOSTS": json.dumps(HOSTS),
        "SM_CURRENT_HOST": host,
        "SM_NUM_GPUS": "1",
        distributed.MASTER_ADDR_ENV: "127.0.0.1",
        distributed.MASTER_PORT_ENV: str(port),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "TUNELOOP_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    args = ["--base_model", str(base_model), "--precision", "fp32", *COMMON]
    args += ["--gradient_accumulation_steps", "2", "--checkpoint_dir", str(root / "checkpoints")]
    return subprocess.Popen(
        [sys.executable, str(ENTRY_POINT), *args, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(node: subprocess.Popen[str], expect: int = 0) -> str:
    try:
        output, _ = node.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        node.kill()
        output, _ = node.communicate()
        raise AssertionError(f"a node did not finish:\n{output}") from None
    assert node.returncode == expect, output
    return output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _assert_same_adapter(model_dir: Path, reference_dir: Path) -> None:
    weights = load_file(model_dir / "adapter_model.safetensors")
    reference = load_file(reference_dir / "adapter_model.safetensors")
    assert weights.keys() == reference.keys()
    for name, tensor in weights.items():
        # Adam divides by the gradient's magnitude: summation-order noise shows more here.
        torch.testing.assert_close(tensor, reference[name], rtol=1e-3, atol=1e-4, msg=name)
