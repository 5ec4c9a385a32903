"""Canary and linear rollouts on the local platform, with requests flowing throughout.

The stage is the local one with a canary of one instance in four (25% of traffic) watched
for 20 s, given as `-c rollout=...` would give it. The platform routes every request of an
update to the old or the new fleet by weight (tuneloop/local/traffic_split.py) and records
the shares and the requests each fleet received. In order:

1. a first version creates the endpoint (no rollout);
2. an operator switches Deploy's rollout to linear steps of 25%: the second version
   reaches all traffic step by step and is promoted;
3. the third version's serving container dies once healthy: during the canary one request
   in four fails, the 5XX alarm fires, SageMaker's auto-rollback (emulated) returns all
   traffic to the second version, and the run fails without promoting the third.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.e2e.loop_helpers import (
    deployed_platform,
    drop_and_follow,
    given_assembly,
    write_drop,
)
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.platform import LocalPlatform
from tuneloop.local.traffic_split import NEW, OLD
from tuneloop.release.rollout import RolloutSettings

pytestmark = pytest.mark.e2e

# Short waits keep the test quick; they are within the API's limits, so no scaling is needed
# (the local platform waits the configured seconds).
CANARY = {
    "mode": "canary",
    "instance_count": 4,
    "canary_size_percent": 25,
    "wait_interval_seconds": 20,
    "baking_seconds": 2,
}
LINEAR = {**CANARY, "mode": "linear", "linear_step_percent": 25, "wait_interval_seconds": 2}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    base_model = make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny")
    work = tmp_path_factory.mktemp("e2e-rollout")
    context = {
        "stage": "local",
        "retrain_threshold": "5",
        "base_model": str(base_model),
        "rollout": json.dumps(CANARY),
    }
    with deployed_platform(work, context, assembly=given_assembly(), permissive_gate=True) as local:
        yield local


class Traffic:
    """Calls the endpoint a few times a second while it is being updated; records who
    answered each request (its model version, or ``error``)."""

    def __init__(self, endpoint_name: str) -> None:
        self.endpoint_name = endpoint_name
        self.answers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        session = boto3.session.Session()  # clients of the default session are not thread-safe
        sagemaker: Any = session.client("sagemaker")
        runtime: Any = session.client("sagemaker-runtime")
        body = json.dumps({"prompt": "Hello", "parameters": {"max_new_tokens": 2}})
        while not self._stop.wait(0.25):
            try:
                status = sagemaker.describe_endpoint(EndpointName=self.endpoint_name)
            except ClientError:
                continue  # not created yet
            if status["EndpointStatus"] not in ("Updating", "RollingBack"):
                continue
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=self.endpoint_name, Body=body, ContentType="application/json"
                )
            except ClientError as error:
                assert error.response["Error"]["Code"] == "ModelError"
                self.answers.append("error")
            else:
                self.answers.append(str(json.loads(response["Body"].read())["model_version"]))


def set_rollout(settings: dict[str, Any]) -> None:
    """Change Deploy's rollout as an operator would: the deployed function's settings."""
    lambdas: Any = boto3.client("lambda")
    deploy = next(
        f
        for f in lambdas.list_functions()["Functions"]
        if f["Handler"] == "lambdas.deploy.handler.handler"
    )
    variables = dict(deploy["Environment"]["Variables"])
    current = RolloutSettings.from_json(variables["ROLLOUT_SETTINGS"])
    variables["ROLLOUT_SETTINGS"] = current.with_overrides(settings).to_json()
    lambdas.update_function_configuration(
        FunctionName=deploy["FunctionName"], Environment={"Variables": variables}
    )


def test_the_first_version_creates_the_endpoint(platform: LocalPlatform, tmp_path: Path) -> None:
    run = drop_and_follow(platform, [write_drop(tmp_path / "first.jsonl", "gadget", 6)])
    assert run.status == "SUCCEEDED", run.cause
    assert platform.invoke("Hello", max_new_tokens=2)["model_version"] == run.name
    assert platform.emulator.endpoints.rollouts(platform.resources.endpoint_name) == []


def test_a_healthy_linear_rollout_reaches_all_traffic(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    # Given production's first version and Deploy set to linear steps of 25%
    first = platform.control_item("production")
    assert first is not None
    set_rollout(LINEAR)
    endpoint = platform.resources.endpoint_name
    # When the next version is deployed while requests keep coming
    try:
        with Traffic(endpoint) as traffic:
            run = drop_and_follow(platform, [write_drop(tmp_path / "second.jsonl", "widget", 6)])
    finally:
        set_rollout(CANARY)
    # Then it was promoted after every step, the old fleet taking less at each
    assert run.status == "SUCCEEDED", run.cause
    (rollout,) = platform.emulator.endpoints.rollouts(endpoint)
    assert rollout.shares == [0, 25, 50, 75, 100] and rollout.outcome == "completed"
    for step in rollout.steps:  # each step's requests split by its weight, within one
        total = step.requests[OLD] + step.requests[NEW]
        assert abs(step.requests[NEW] - total * step.share / 100) < 1, step
    assert rollout.requests(NEW) > 0, "the new fleet took traffic before the end"
    assert "error" not in traffic.answers
    assert set(traffic.answers) <= {first["model_version"], run.name}
    production = platform.control_item("production")
    assert production is not None and production["model_version"] == run.name
    assert platform.invoke("Hello", max_new_tokens=2)["model_version"] == run.name


def test_a_failing_canary_rolls_back_before_full_traffic(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    # Given production's second version, and a next version whose container dies once healthy
    before = platform.control_item("production")
    assert before is not None
    endpoint = platform.resources.endpoint_name
    platform.emulator.endpoints.crash_next_fleet = True
    # When it is deployed as the stage's 25% canary while requests keep coming
    with Traffic(endpoint) as traffic:
        run = drop_and_follow(platform, [write_drop(tmp_path / "third.jsonl", "sprocket", 6)])
    # Then the canary's share of requests failed, the 5XX alarm fired, and the update was
    # rolled back before the new fleet ever got all traffic
    rollout = platform.emulator.endpoints.rollouts(endpoint)[-1]
    assert rollout.shares == [0, 25, 0] and rollout.outcome == "rolled_back"
    canary = rollout.steps[1]  # one request in four went to the new fleet, within one
    reached, total = canary.requests[NEW], canary.requests[NEW] + canary.requests[OLD]
    assert reached >= 1 and abs(reached - total * 0.25) < 1, canary
    assert rollout.requests(NEW) == reached
    assert traffic.answers.count("error") == reached
    assert run.name not in traffic.answers
    assert any(
        a["Trigger"]["MetricName"] == "Invocation5XXErrors" for a in platform.emulator.alarms.fired
    )
    # ... the run failed at ConfirmDeployment with SageMaker's reason, nothing was promoted
    assert run.status == "FAILED"
    assert "DeploymentRolledBack" in run.error + run.cause, (run.error, run.cause)
    assert "canary step" in run.cause, run.cause
    assert platform.control_item("production") == before
    failed = platform.model_version(run.name)
    assert failed is not None and failed["status"] == "failed"
    # ... and the previous version still serves every request
    described = platform.endpoint()
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == before["endpoint_config_name"]
    assert "canary step" in described["FailureReason"]
    answers = [platform.invoke("Hello", max_new_tokens=2)["model_version"] for _ in range(4)]
    assert answers == [before["model_version"]] * 4
