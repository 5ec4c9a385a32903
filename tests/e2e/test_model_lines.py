"""Two model lines on one endpoint, on the local platform, deployed from the stage config.

The stage is the local one with the lines ``support`` (dataset ``support``) and ``search``
(dataset ``search``), given as ``-c model_lines=...`` would give them. The Serving stack
creates the endpoint with its base component; each line's runs train from that line's drops
and its own production adapter, and go live on the line's adapter component. In order:

1. a ``support`` drop starts a run of the ``support`` line only, which goes live on the
   ``support`` component; the ``search`` component does not exist yet;
2. a ``search`` drop does the same for ``search``; ``support`` serves on;
3. a second ``support`` version continues from the first, which becomes its last-known-good;
4. 5XX errors on the ``support`` component fire that line's alarm: ``support`` is rolled back
   to its first version and ``search`` is not touched; the incident names support's version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.loop_helpers import deployed_platform, wait_for, wait_for_incident, write_drop
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.platform import LocalPlatform, RunResult
from tuneloop.model_line_settings import BASE_COMPONENT

pytestmark = pytest.mark.e2e

LINES = [
    {"name": "support", "datasets": ["support"]},
    {"name": "search", "datasets": ["search"]},
]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    base_model = make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny")
    context = {
        "stage": "local",
        "retrain_threshold": "5",
        "base_model": str(base_model),
        "model_lines": json.dumps(LINES),
        # The variant's target tracking does not scale an endpoint of components (synth says so)
        "autoscaling": json.dumps({"enabled": False}),
    }
    work = tmp_path_factory.mktemp("e2e-lines")
    with deployed_platform(work, context, permissive_gate=True) as local:
        yield local


def drop_for(platform: LocalPlatform, path: Path, dataset: str) -> RunResult:
    known = {e["executionArn"] for e in platform.executions()}
    platform.drop_files([path], dataset=dataset)
    return platform.follow_run(platform.wait_for_new_run(known), timeout=600)


def invoke_line(platform: LocalPlatform, component: str) -> dict[str, Any]:
    runtime: Any = boto3.client("sagemaker-runtime")
    response = runtime.invoke_endpoint(
        EndpointName=platform.resources.endpoint_name,
        InferenceComponentName=component,
        ContentType="application/json",
        Body=json.dumps({"prompt": "Hello", "parameters": {"max_new_tokens": 2}}),
    )
    return dict(json.loads(response["Body"].read()))


def component(name: str) -> dict[str, Any] | None:
    sagemaker: Any = boto3.client("sagemaker")
    listed = sagemaker.list_inference_components()["InferenceComponents"]
    return next((c for c in listed if c["InferenceComponentName"] == name), None)


def production(platform: LocalPlatform, line: str) -> dict[str, Any]:
    item = platform.control_item(f"production#{line}")
    assert item is not None, f"line {line} has no production version"
    return item


def test_the_stack_hosts_the_base_component(platform: LocalPlatform) -> None:
    base = component(BASE_COMPONENT)
    assert base is not None and base["InferenceComponentStatus"] == "InService"
    assert invoke_line(platform, BASE_COMPONENT)["generated_text"] is not None
    assert component("support") is None and component("search") is None


def test_a_lines_drop_trains_and_deploys_that_line(platform: LocalPlatform, tmp_path: Path) -> None:
    run = drop_for(platform, write_drop(tmp_path / "support.jsonl", "refund", 6), "support")
    assert run.status == "SUCCEEDED", run.cause
    assert run.name.endswith("-support")
    assert run.output["dataset"]["model_line"] == "support"
    assert invoke_line(platform, "support")["model_version"] == run.name
    assert production(platform, "support")["model_version"] == run.name
    version = platform.model_version(run.name)
    assert version is not None and version["model_line"] == "support"
    assert version["datasets"] == {"support": 6}
    assert platform.control_item("production") is None, "no endpoint-wide production"
    assert component("search") is None


def test_the_other_line_goes_live_beside_it(platform: LocalPlatform, tmp_path: Path) -> None:
    support = production(platform, "support")
    run = drop_for(platform, write_drop(tmp_path / "search.jsonl", "manual", 6), "search")
    assert run.status == "SUCCEEDED", run.cause
    assert run.name.endswith("-search")
    # search's first version has no champion: it did not start from support's adapter
    assert run.output["dataset"]["champion_version"] == ""
    assert invoke_line(platform, "search")["model_version"] == run.name
    assert invoke_line(platform, "support")["model_version"] == support["model_version"]
    assert production(platform, "support") == support


def test_a_second_version_continues_its_lines_adapter(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    first, search = production(platform, "support"), production(platform, "search")
    run = drop_for(platform, write_drop(tmp_path / "support2.jsonl", "invoice", 6), "support")
    assert run.status == "SUCCEEDED", run.cause
    assert run.output["dataset"]["champion_version"] == first["model_version"]
    now = production(platform, "support")
    assert now["model_version"] == run.name
    assert now["last_known_good"]["model_version"] == first["model_version"]
    assert production(platform, "search") == search
    assert invoke_line(platform, "support")["model_version"] == run.name


def test_an_alarm_on_one_line_rolls_back_that_line_only(platform: LocalPlatform) -> None:
    support, search = production(platform, "support"), production(platform, "search")
    restored_version = support["last_known_good"]["model_version"]
    endpoint = platform.resources.endpoint_name
    # SageMaker's per-component metric, as a failing adapter would make it
    cloudwatch: Any = boto3.client("cloudwatch")
    for _ in range(3):
        cloudwatch.put_metric_data(
            Namespace="AWS/SageMaker",
            MetricData=[
                {
                    "MetricName": "Invocation5XXErrors",
                    "Dimensions": [
                        {"Name": "EndpointName", "Value": endpoint},
                        {"Name": "InferenceComponentName", "Value": "support"},
                    ],
                    "Timestamp": datetime.now(UTC),
                    "Value": 5.0,
                    "Unit": "Count",
                }
            ],
        )
    restored = wait_for(
        lambda: production(platform, "support")["model_version"] == restored_version, timeout=90
    )
    assert restored, "the support line's alarm restores its last-known-good version"
    fired = [a for a in platform.emulator.alarms.fired if "support" in json.dumps(a["Trigger"])]
    assert fired, platform.emulator.alarms.fired
    assert wait_for(
        lambda: invoke_line(platform, "support")["model_version"] == restored_version, timeout=60
    )
    rolled_back = platform.model_version(support["model_version"])
    assert rolled_back is not None and rolled_back["status"] == "rolled_back"
    assert production(platform, "search") == search
    assert invoke_line(platform, "search")["model_version"] == search["model_version"]
    # ... and the alarm's incident names the line's version and what was done
    incident = wait_for_incident(
        "Invocation5XXErrors", lambda i: bool(i.automatic_actions and i.production)
    )
    assert incident.production["model_line"] == "support"
    assert incident.production["model_version"] == support["model_version"]
    assert incident.automatic_actions[0]["action"] == "rollback"
