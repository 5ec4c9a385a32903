"""Inference components on the emulator: a base component and two adapter components on one
endpoint, each invocation answered by the component it names, per-component metrics, an
adapter swapped by UpdateInferenceComponent, a failed update keeping the old adapter, and
deletion in SageMaker's order (adapters before their base)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.integration.archives import archive_folder
from tests.integration.emulator_fixtures import unenforced_emulator
from tests.unit.serving_client import greedy_answer
from tests.unit.tiny_models import make_tiny_adapter, make_tiny_causal_lm
from tuneloop.local.emulator import Emulator

ENDPOINT = "lines-ep"
PROMPT = "a longer prompt than the first one"


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from unenforced_emulator(tmp_path_factory)


@pytest.fixture(scope="module")
def models(aws: Emulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    base = make_tiny_causal_lm(root / "base")
    found = {
        "base": base,
        "support": make_tiny_adapter(base, root / "support", seed=1, version="v-support-1"),
        "search": make_tiny_adapter(base, root / "search", seed=2, version="v-search-1"),
        "support2": make_tiny_adapter(base, root / "support2", seed=3, version="v-support-2"),
    }
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="models")
    for name in ("support", "search", "support2"):
        s3.put_object(Bucket="models", Key=f"{name}/model.tar.gz", Body=archive_folder(found[name]))
    s3.put_object(Bucket="models", Key="broken/model.tar.gz", Body=archive_folder(root / "base"))
    return found


def wait_for_component(name: str, status: str, timeout: float = 300) -> dict[str, Any]:
    sagemaker: Any = boto3.client("sagemaker")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sagemaker.describe_inference_component(InferenceComponentName=name)
        if described["InferenceComponentStatus"] == status:
            return dict(described)
        time.sleep(0.2)
    raise AssertionError(f"{name} never reached {status}: {described}")


def _adapter_spec(base: str, key: str) -> dict[str, Any]:
    return {
        "BaseInferenceComponentName": base,
        "Container": {"ArtifactUrl": f"s3://models/{key}/model.tar.gz"},
    }


def host_base_component(endpoint_name: str, base_dir: Path, role_name: str = "model") -> None:
    """An endpoint of inference components with an InService base component ``base``."""
    sagemaker: Any = boto3.client("sagemaker")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    role = boto3.client("iam").create_role(RoleName=role_name, AssumeRolePolicyDocument=trust)
    sagemaker.create_model(
        ModelName=f"{endpoint_name}-base",
        ExecutionRoleArn=role["Role"]["Arn"],
        PrimaryContainer={
            "Image": "serving",
            "Environment": {
                "TUNELOOP_BASE_MODEL": str(base_dir),
                "TUNELOOP_ENDPOINT_NAME": endpoint_name,
            },
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{endpoint_name}-config",
        ExecutionRoleArn=role["Role"]["Arn"],
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "InstanceType": "ml.g4dn.xlarge",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(
        EndpointName=endpoint_name, EndpointConfigName=f"{endpoint_name}-config"
    )
    sagemaker.create_inference_component(
        InferenceComponentName="base",
        EndpointName=endpoint_name,
        VariantName="AllTraffic",
        Specification={
            "ModelName": f"{endpoint_name}-base",
            "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 1024},
        },
        RuntimeConfig={"CopyCount": 1},
    )
    wait_for_component("base", "InService")


@pytest.fixture(scope="module")
def endpoint(aws: Emulator, models: dict[str, Path]) -> str:
    sagemaker: Any = boto3.client("sagemaker")
    host_base_component(ENDPOINT, models["base"])
    for line in ("support", "search"):
        sagemaker.create_inference_component(
            InferenceComponentName=line,
            EndpointName=ENDPOINT,
            Specification=_adapter_spec("base", line),
        )
    wait_for_component("support", "InService")
    wait_for_component("search", "InService")
    return ENDPOINT


def invoke_component(
    component: str, prompt: str = PROMPT, endpoint_name: str = ENDPOINT
) -> dict[str, Any]:
    runtime: Any = boto3.client("sagemaker-runtime")
    body = json.dumps({"prompt": prompt, "parameters": {"max_new_tokens": 8}})
    response = runtime.invoke_endpoint(
        EndpointName=endpoint_name,
        InferenceComponentName=component,
        ContentType="application/json",
        Body=body,
    )
    return dict(json.loads(response["Body"].read()))


def test_each_component_answers_with_its_own_model(endpoint: str, models: dict[str, Path]) -> None:
    for component, folder, version in (
        ("support", models["support"], "v-support-1"),
        ("search", models["search"], "v-search-1"),
        ("base", models["base"], None),
    ):
        answer = invoke_component(component)
        assert answer["generated_text"] == greedy_answer(folder, PROMPT, 8), component
        if version:
            assert answer["model_version"] == version
    listed = boto3.client("sagemaker").list_inference_components(EndpointNameEquals=endpoint)
    assert sorted(c["InferenceComponentName"] for c in listed["InferenceComponents"]) == [
        "base",
        "search",
        "support",
    ]


def test_metrics_are_published_per_component(endpoint: str) -> None:
    invoke_component("search")
    cloudwatch: Any = boto3.client("cloudwatch")
    listed = cloudwatch.list_metrics(
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=[{"Name": "InferenceComponentName", "Value": "search"}],
    )
    assert listed["Metrics"], "no per-component Invocations metric"
    # The container's own EMF metrics carry the component and the adapter's version too.
    quality = cloudwatch.list_metrics(
        Namespace="TuneLoop/Endpoint",
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "InferenceComponentName", "Value": "search"},
            {"Name": "ModelVersion", "Value": "v-search-1"},
        ],
    )
    assert quality["Metrics"], "no per-component quality metrics"


def test_an_update_swaps_the_adapter_and_a_bad_one_keeps_the_old(
    endpoint: str, models: dict[str, Path]
) -> None:
    sagemaker: Any = boto3.client("sagemaker")
    sagemaker.update_inference_component(
        InferenceComponentName="support", Specification=_adapter_spec("base", "support2")
    )
    described = wait_for_component("support", "InService")
    assert "FailureReason" not in described
    answer = invoke_component("support")
    assert answer["model_version"] == "v-support-2"
    assert answer["generated_text"] == greedy_answer(models["support2"], PROMPT, 8)
    # A plain model is no adapter: the container refuses it and support2 serves on.
    sagemaker.update_inference_component(
        InferenceComponentName="support", Specification=_adapter_spec("base", "broken")
    )
    described = wait_for_component("support", "InService")
    assert "not a TuneLoop adapter folder" in described["FailureReason"]
    assert described["Specification"]["Container"]["ArtifactUrl"].endswith("support2/model.tar.gz")
    assert invoke_component("support")["model_version"] == "v-support-2"


def test_bad_requests_are_refused_as_sagemaker_does(endpoint: str) -> None:
    sagemaker: Any = boto3.client("sagemaker")
    with pytest.raises(ClientError, match="exactly one of ModelName"):
        sagemaker.create_inference_component(
            InferenceComponentName="neither", EndpointName=endpoint, Specification={}
        )
    with pytest.raises(ClientError, match="Could not find inference component 'nowhere'"):
        sagemaker.create_inference_component(
            InferenceComponentName="orphan",
            EndpointName=endpoint,
            Specification=_adapter_spec("nowhere", "search"),
        )
    with pytest.raises(ClientError, match="has adapter components"):
        sagemaker.delete_inference_component(InferenceComponentName="base")
    with pytest.raises(ClientError, match="Could not find inference component 'nowhere'"):
        invoke_component("nowhere")


def test_deleting_an_adapter_component_stops_its_line_only(endpoint: str) -> None:
    sagemaker: Any = boto3.client("sagemaker")
    sagemaker.delete_inference_component(InferenceComponentName="search")
    with pytest.raises(ClientError, match="Could not find inference component 'search'"):
        invoke_component("search")
    assert invoke_component("support")["model_version"] == "v-support-2"
