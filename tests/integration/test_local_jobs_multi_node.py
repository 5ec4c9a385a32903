"""Training jobs of several instances on the local platform: ``ResourceConfig.InstanceCount``
N runs N host processes ``algo-1``..``algo-N`` (tuneloop/local/jobs.py).

The real entry point from the deployed ``sourcedir.tar.gz`` on a tiny model: 2 instances
accumulating 2 micro-batches each upload the model of 1 instance accumulating 4 (the
equivalence tests/unit/test_training_multi_node.py shows for the trainer itself). A stub
entry point covers the layout, the leader-only upload and a failing host."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
from safetensors.torch import load as load_safetensors

from stacks.assets import sourcedir_bytes
from tests.integration.archives import archive_files
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.emulator import Emulator
from tuneloop.local.jobs import JobSpec, LocalJobRunner

BUCKET = "multi-node"
ROLE = "arn:aws:iam::123456789012:role/sm"
STEPS = 6
COMMON = {
    "precision": "fp32",
    "learning_rate": "0.01",
    "per_device_batch_size": "2",
    "max_seq_length": "64",
    "max_steps": str(STEPS),
}

# Stands for an entry point on each host: says where it runs, writes a model, and with
# --fail_host fails there while the other hosts wait (as torchrun waits at the rendezvous).
STUB = """
import argparse, json, os, pathlib, signal, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint_dir")
parser.add_argument("--fail_host", default="")
parser.add_argument("--ready_dir", default="")
args = parser.parse_args()
host = os.environ["SM_CURRENT_HOST"]
config_dir = pathlib.Path(os.environ["SM_INPUT_CONFIG_DIR"])
resource = json.loads((config_dir / "resourceconfig.json").read_text())
channel = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"])
print("hosts", os.environ["SM_HOSTS"], "resource", resource["current_host"], resource["hosts"])
print("master", os.environ.get("TUNELOOP_MASTER_ADDR"), os.environ.get("TUNELOOP_MASTER_PORT"))
print("channel", sorted(p.name for p in channel.iterdir()), flush=True)
if args.fail_host == host:
    ready = pathlib.Path(args.ready_dir)
    deadline = time.monotonic() + 60
    while len(list(ready.glob("*.ready"))) < len(resource["hosts"]) - 1:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text(f"bad shard on {host}")
    sys.exit(3)
if args.fail_host:
    def stopped(signum, frame):
        print("got SIGTERM", flush=True)
        sys.exit(143)
    signal.signal(signal.SIGTERM, stopped)
    pathlib.Path(args.ready_dir, host + ".ready").touch()
    time.sleep(300)
    sys.exit(0)
pathlib.Path(os.environ["SM_MODEL_DIR"], "weights.txt").write_text(host)
pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "report.json").write_text(json.dumps({"by": host}))
"""


def _records() -> list[dict[str, Any]]:
    """Text and chat records of different lengths (so padding and packing matter)."""
    records: list[dict[str, Any]] = []
    for index in range(8):
        records.append({"text": f"note {index}: " + "tiny words " * (1 + index % 4)})
        records.append(
            {
                "messages": [
                    {"role": "user", "content": f"question {index}" + "?" * (index % 3)},
                    {"role": "assistant", "content": "answer " * (1 + index % 2)},
                ]
            }
        )
    return records


@pytest.fixture(scope="module")
def job_log() -> list[tuple[str, str]]:
    return []


@pytest.fixture(scope="module")
def aws(
    tmp_path_factory: pytest.TempPathFactory, job_log: list[tuple[str, str]]
) -> Iterator[Emulator]:
    # Permissions of training jobs are covered by tests/e2e; here roles are not enforced.
    with Emulator(
        tmp_path_factory.mktemp("platform"),
        on_job_log=lambda job, line: job_log.append((job, line)),
        alarm_interval_seconds=3600,
        enforce_permissions=False,
    ) as emulator:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=sourcedir_bytes())
        s3.put_object(
            Bucket=BUCKET,
            Key="stub/sourcedir.tar.gz",
            Body=archive_files({"train.py": STUB.encode()}),
        )
        body = "".join(json.dumps(r) + "\n" for r in _records()).encode()
        s3.put_object(Bucket=BUCKET, Key="data/train.jsonl", Body=body)
        yield emulator


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base"))


def _train(name: str, code: str, instances: int, hyperparameters: dict[str, str]) -> dict[str, Any]:
    """Create the training job and wait until it ends; its description."""
    sagemaker: Any = boto3.client("sagemaker")
    sagemaker.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "local", "TrainingInputMode": "File"},
        RoleArn=ROLE,
        HyperParameters={
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": f"s3://{BUCKET}/{code}/sourcedir.tar.gz",
            **hyperparameters,
        },
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/"}
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/jobs"},
        ResourceConfig={
            "InstanceCount": instances,
            "InstanceType": "ml.m5.large",
            "VolumeSizeInGB": 10,
        },
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        described = dict(sagemaker.describe_training_job(TrainingJobName=name))
        if described["TrainingJobStatus"] != "InProgress":
            return described
        time.sleep(0.2)
    raise AssertionError(f"training job {name} did not finish")


def _member(job: str, archive: str, member: str) -> bytes:
    key = f"jobs/{job}/output/{archive}"
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        extracted = tar.extractfile(member)
        assert extracted is not None, f"{member} not in {key}"
        return extracted.read()


def _host_lines(job_log: list[tuple[str, str]], job: str, host: str) -> list[str]:
    prefix = f"[{host}] "
    return [
        line[len(prefix) :] for name, line in job_log if name == job and line.startswith(prefix)
    ]


# ---- the real entry point ------------------------------------------------------------------


def test_two_instances_train_the_model_of_one_with_the_same_total_batch(
    aws: Emulator, base_model: Path, job_log: list[tuple[str, str]]
) -> None:
    """2 instances x 1 process x 2 micro-batches = 1 instance x 4: same losses step for step
    (within 1e-5) and the same adapter (within the tolerances of the trainer's own test)."""
    one = _train(
        "one-instance",
        "code",
        1,
        {**COMMON, "base_model": str(base_model), "gradient_accumulation_steps": "4"},
    )
    two = _train(
        "two-instances",
        "code",
        2,
        {**COMMON, "base_model": str(base_model), "gradient_accumulation_steps": "2"},
    )
    assert one["TrainingJobStatus"] == "Completed", one.get("FailureReason")
    assert two["TrainingJobStatus"] == "Completed", two.get("FailureReason")

    # Both hosts ran, as nodes of one torchrun rendezvous.
    assert any(
        "node 1 of 2 (algo-1)" in line for line in _host_lines(job_log, "two-instances", "algo-1")
    )
    assert any(
        "node 2 of 2 (algo-2)" in line for line in _host_lines(job_log, "two-instances", "algo-2")
    )
    report = json.loads(_member("two-instances", "output.tar.gz", "training_report.json"))
    reference = json.loads(_member("one-instance", "output.tar.gz", "training_report.json"))
    assert report["processes"] == 2 and reference["processes"] == 1
    assert report["examples_seen"] == reference["examples_seen"]
    assert len(report["losses"]) == len(reference["losses"]) == STEPS
    delta = max(abs(a - b) for a, b in zip(report["losses"], reference["losses"], strict=True))
    print(f"2 instances vs 1: max |dloss| {delta:.2e} over {STEPS} steps")
    assert delta < 1e-5

    weights = load_safetensors(
        _member("two-instances", "model.tar.gz", "adapter_model.safetensors")
    )
    expected = load_safetensors(
        _member("one-instance", "model.tar.gz", "adapter_model.safetensors")
    )
    assert weights.keys() == expected.keys()
    for name, tensor in weights.items():
        # Adam divides by the gradient's magnitude: summation-order noise shows more here.
        torch.testing.assert_close(tensor, expected[name], rtol=1e-3, atol=1e-4, msg=name)

    # The trainer writes outputs on rank 0 only (algo-1): algo-2's are empty, nothing is lost
    # by uploading the leader's alone.
    second = aws.work_dir / "jobs" / "two-instances" / "algo-2"
    assert not [p for p in (second / "model").rglob("*") if p.is_file()]
    assert not [p for p in (second / "output" / "data").rglob("*") if p.is_file()]


# ---- a stub entry point --------------------------------------------------------------------


def test_each_host_has_its_own_folder_and_only_the_leaders_outputs_are_uploaded(
    aws: Emulator, job_log: list[tuple[str, str]]
) -> None:
    described = _train("three-hosts", "stub", 3, {})
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    hosts = ["algo-1", "algo-2", "algo-3"]
    ports = set()
    for host in hosts:
        lines = _host_lines(job_log, "three-hosts", host)
        assert f"hosts {json.dumps(hosts)} resource {host} {hosts}" in lines
        assert "channel ['train.jsonl']" in lines  # every host gets every file (FullyReplicated)
        master = next(line for line in lines if line.startswith("master "))
        assert master.split()[1] == "127.0.0.1"
        ports.add(master.split()[2])
        config = aws.work_dir / "jobs" / "three-hosts" / host / "input/config/resourceconfig.json"
        resource = json.loads(config.read_text())
        assert resource["current_host"] == host and resource["hosts"] == hosts
        assert resource["current_instance_type"] == "ml.m5.large"
        assert resource["instance_groups"][0]["hosts"] == hosts
    assert len(ports) == 1, "one rendezvous port for the whole job"
    assert _member("three-hosts", "model.tar.gz", "weights.txt") == b"algo-1"
    assert json.loads(_member("three-hosts", "output.tar.gz", "report.json")) == {"by": "algo-1"}
    notes = [line for job, line in job_log if job == "three-hosts" and line.startswith("[local]")]
    assert notes == [
        f"[local] {host} wrote 2 file(s) to its model/output dir; only algo-1's are uploaded"
        for host in hosts[1:]
    ]


def test_a_failing_host_fails_the_job_naming_it_and_stops_the_others(
    aws: Emulator, job_log: list[tuple[str, str]], tmp_path: Path
) -> None:
    started = time.monotonic()
    described = _train(
        "failing-host", "stub", 3, {"fail_host": "algo-2", "ready_dir": str(tmp_path)}
    )
    # The others would sleep 300 s: they were stopped, not waited for.
    assert time.monotonic() - started < 60
    assert described["TrainingJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert reason.startswith("AlgorithmError: bad shard on algo-2 (host algo-2, exit code 3;")
    assert "failing-host/algo-2/job.log" in reason
    for host in ("algo-1", "algo-3"):
        assert "got SIGTERM" in _host_lines(job_log, "failing-host", host)
    with pytest.raises(boto3.client("s3").exceptions.NoSuchKey):
        _member("failing-host", "model.tar.gz", "weights.txt")


def test_an_instance_count_below_one_fails_before_anything_runs(tmp_path: Path) -> None:
    spec = JobSpec(
        name="no-instances",
        hyperparameters={"sagemaker_program": "train.py", "sagemaker_submit_directory": "s3://b/c"},
        channels={},
        output_path="s3://b/jobs",
        instance_count=0,
    )
    outcome = LocalJobRunner(tmp_path, {}).run(spec)
    assert not outcome.succeeded
    assert outcome.failure_reason == "ResourceConfig.InstanceCount must be at least 1, got 0"
