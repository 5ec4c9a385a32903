"""The whole loop on the local platform, with a tiny model built from a config.

One platform is deployed for the module and the tests run in order, as a platform team
would live through them: a first model is deployed, a second one replaces it, a fault
rolls it back, a candidate the gate rejects changes nothing, a failing training job
deploys nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.e2e.loop_helpers import (
    PERMISSIVE_POLICY,
    deployed_platform,
    drop_and_follow,
    given_assembly,
    set_gate_policy,
    wait_for,
    wait_for_incident,
    write_drop,
)
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.platform import LocalPlatform

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, base_model: Path) -> Iterator[LocalPlatform]:
    work = tmp_path_factory.mktemp("e2e")
    context = {"stage": "local", "retrain_threshold": "5", "base_model": str(base_model)}
    with deployed_platform(work, context, assembly=given_assembly(), permissive_gate=True) as local:
        yield local


def test_bad_input_is_quarantined_and_the_rest_is_stored(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    bad = tmp_path / "mixed.jsonl"
    bad.write_text('{"text": "a good line of text"}\n{not json\n', encoding="utf-8")
    unknown = tmp_path / "sheet.xlsx"
    unknown.write_bytes(b"binary")
    platform.drop_files([bad, unknown], dataset="bad")
    drops = {d["key"].rsplit("/", 1)[-1]: d for d in platform.drops()}
    mixed = drops["mixed.jsonl"]
    assert (mixed["received"], mixed["stored"], mixed["quarantined"]) == (2, 1, 1)
    assert drops["sheet.xlsx"]["quarantined"] >= 1 and drops["sheet.xlsx"]["stored"] == 0
    s3 = boto3.client("s3")
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=platform.resources.raw_bucket, Prefix="quarantine/")[
            "Contents"
        ]
    ]
    rejected = [
        json.loads(line)
        for key in keys
        if key.endswith("mixed.jsonl.jsonl") or "mixed" in key
        for line in s3.get_object(Bucket=platform.resources.raw_bucket, Key=key)["Body"]
        .read()
        .decode()
        .splitlines()
    ]
    assert rejected and rejected[0]["line"] == 2 and "mixed.jsonl" in rejected[0]["file"]


def test_first_run_deploys_and_the_endpoint_answers(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    run = drop_and_follow(platform, [write_drop(tmp_path / "first.jsonl", "gadget", 12)])
    assert run.status == "SUCCEEDED", run.cause
    assert run.output["gate"]["approved"] is True
    production = platform.control_item("production")
    assert production is not None and production["model_version"] == run.name
    answer = platform.invoke("Hello", max_new_tokens=4)
    assert answer["model_version"] == run.name
    assert answer["completion_tokens"] >= 1


def test_second_run_replaces_it_and_an_alarm_rolls_back(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    first = platform.control_item("production")
    assert first is not None
    run = drop_and_follow(platform, [write_drop(tmp_path / "second.jsonl", "widget", 8)])
    assert run.status == "SUCCEEDED", run.cause
    production = platform.control_item("production")
    assert production is not None and production["model_version"] == run.name
    assert production["last_known_good"]["model_version"] == first["model_version"]

    platform.crash_endpoint()
    for _ in range(3):
        with pytest.raises(Exception, match=r"ModelError|error"):
            platform.invoke("Hello", max_new_tokens=2)
    restored = wait_for(
        lambda: (
            (platform.control_item("production") or {}).get("model_version")
            == first["model_version"]
        ),
        timeout=60,
    )
    assert restored, "the alarm's rollback restores the last-known-good version"
    assert any("Invocation5XXErrors" in a["AlarmName"] for a in platform.emulator.alarms.fired)
    platform.wait_for_endpoint(
        lambda e: (
            e["EndpointStatus"] == "InService"
            and e["EndpointConfigName"] == first["endpoint_config_name"]
        ),
        timeout=120,
    )
    assert platform.invoke("Hello", max_new_tokens=2)["model_version"] == first["model_version"]
    rolled_back = platform.model_version(run.name)
    assert rolled_back is not None and rolled_back["status"] == "rolled_back"
    # And an incident explains it: the version that served, what changed, what was done
    incident = wait_for_incident(
        "Invocation5XXErrors", lambda i: bool(i.automatic_actions and i.production)
    )
    assert incident.production["model_version"] == run.name
    assert incident.last_known_good["model_version"] == first["model_version"]
    assert incident.runbook == "docs/runbooks/endpoint-errors.md"
    assert incident.changes["against"] == first["model_version"]
    assert incident.changes["drops_added"], "the second run's drop is what changed"
    assert incident.automatic_actions[0]["to_version"] == first["model_version"]


def test_gate_rejection_leaves_production_untouched(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    before = platform.control_item("production")
    # An operator raises the bar beyond reach: every benchmark must improve by 50 points.
    target = {"role": "target", "metric": "acc", "min_gain": 0.5}
    set_gate_policy({**PERMISSIVE_POLICY, "suites": {"facts": target, "mmlu": target}})
    run = drop_and_follow(platform, [write_drop(tmp_path / "third.jsonl", "sprocket", 6)])
    assert run.status == "SUCCEEDED", run.cause
    assert run.output["gate"]["approved"] is False
    assert platform.control_item("production") == before
    rejected = platform.model_version(run.name)
    assert rejected is not None and rejected["status"] == "rejected"


def test_failing_training_ends_in_the_failure_path_and_deploys_nothing(
    platform: LocalPlatform, tmp_path: Path, base_model: Path
) -> None:
    before = platform.control_item("production")
    configs_before = boto3.client("sagemaker").list_endpoint_configs()["EndpointConfigs"]
    hidden = base_model.with_name("tiny-hidden")
    shutil.move(base_model, hidden)  # the base model disappears: training must fail
    try:
        run = drop_and_follow(platform, [write_drop(tmp_path / "fourth.jsonl", "gizmo", 6)])
    finally:
        shutil.move(hidden, base_model)
    assert run.status == "FAILED"
    # The job's failure is what the execution reports, as on AWS.
    assert run.error == "States.TaskFailed", (run.error, run.cause)
    assert "TrainingJobStatus" in run.cause and "FailureReason" in run.cause
    assert platform.control_item("production") == before
    failed = platform.model_version(run.name)
    assert failed is not None and failed["status"] == "failed" and failed.get("error")
    # The failed run's alarm opened an incident that names the run and its error
    incident = wait_for_incident("ExecutionsFailed", lambda i: bool(i.failure))
    assert incident.runbook == "docs/runbooks/pipeline-failure.md"
    assert incident.failure["model_version"] == run.name and incident.failure["error"]
    assert incident.automatic_actions == () and incident.status == "open"  # people decide
    configs_after = boto3.client("sagemaker").list_endpoint_configs()["EndpointConfigs"]
    assert len(configs_after) == len(configs_before)
