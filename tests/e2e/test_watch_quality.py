"""Quiet failures on the local platform: a model version that answers empty, one that
refuses and one that stops at its token limit each trip their quality alarm, which rolls it
back to the last-known-good version and opens an incident that explains it; the third
automatic rollback freezes automatic deployment (the repeated-failure guard).

The serving container's test switch (``TUNELOOP_QUIET_FAILURE``, armed for the next
serving process through ``LocalEndpoints.quiet_failure``) makes the second version answer
nothing; its per-request EMF lines become ``TuneLoop/Endpoint`` metrics, the alarm moves to
ALARM, and the Rollback Lambda restores the first version. Sampled traffic is captured to
the curated bucket in SageMaker's layout.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.loop_helpers import (
    deployed_platform,
    drop_and_follow,
    given_assembly,
    wait_for,
    wait_for_incident,
    write_drop,
)
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.platform import LocalPlatform
from tuneloop.release.model_versions import now_iso

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    base_model = make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny")
    work = tmp_path_factory.mktemp("e2e-quality")
    context = {"stage": "local", "retrain_threshold": "5", "base_model": str(base_model)}
    with deployed_platform(work, context, assembly=given_assembly(), permissive_gate=True) as local:
        yield local


def _fired(platform: LocalPlatform, metric: str) -> list[dict[str, Any]]:
    return [a for a in platform.emulator.alarms.fired if a["Trigger"]["MetricName"] == metric]


def test_a_version_that_answers_empty_is_rolled_back(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    # Given a first version in production that answers
    first = drop_and_follow(platform, [write_drop(tmp_path / "first.jsonl", "gadget", 6)])
    assert first.status == "SUCCEEDED", first.cause
    assert platform.invoke("Hello", max_new_tokens=4)["model_version"] == first.name
    first_production = platform.control_item("production")
    assert first_production is not None

    # When the next version's serving container answers nothing at all
    platform.emulator.endpoints.quiet_failure = "empty"
    second = drop_and_follow(platform, [write_drop(tmp_path / "second.jsonl", "widget", 6)])
    assert second.status == "SUCCEEDED", second.cause
    production = platform.control_item("production")
    assert production is not None and production["model_version"] == second.name
    answers = []
    deadline = time.monotonic() + 120
    while not _fired(platform, "EmptyAnswer") and time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the endpoint may be switching back
            answers.append(platform.invoke("Hello", max_new_tokens=4))
        time.sleep(0.5)

    # Then its answers were empty (and not errors), the empty-answer alarm fired ...
    assert answers and all(
        a["generated_text"] == "" for a in answers if a["model_version"] == second.name
    )
    (alarm,) = _fired(platform, "EmptyAnswer")
    assert alarm["NewStateValue"] == "ALARM"
    assert not _fired(platform, "Invocation5XXErrors"), "a quiet failure raises no error alarm"
    # ... and the Rollback Lambda restored the first version, which answers again
    restored = wait_for(
        lambda: (platform.control_item("production") or {}).get("model_version") == first.name,
        timeout=60,
    )
    assert restored, "the quality alarm's rollback restores the last-known-good version"
    platform.wait_for_endpoint(
        lambda e: (
            e["EndpointStatus"] == "InService"
            and e["EndpointConfigName"] == first_production["endpoint_config_name"]
        ),
        timeout=120,
    )
    assert platform.invoke("Hello", max_new_tokens=4)["model_version"] == first.name
    rolled_back = platform.model_version(second.name)
    assert rolled_back is not None and rolled_back["status"] == "rolled_back"
    assert rolled_back.get("rollback_alarm") == alarm["AlarmName"]

    # And the traffic was captured (the local stage samples every invocation)
    s3 = boto3.client("s3")
    prefix = f"capture/{platform.resources.endpoint_name}/AllTraffic/"
    listed = s3.list_objects_v2(Bucket=platform.resources.curated_bucket, Prefix=prefix)
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert len(keys) >= len(answers) + 1
    record = json.loads(
        s3.get_object(Bucket=platform.resources.curated_bucket, Key=keys[-1])["Body"].read()
    )
    assert set(record["captureData"]) == {"endpointInput", "endpointOutput"}

    # And an incident explains it: what fired, the version, what changed, what was done
    incident = wait_for_incident(
        "EmptyAnswer", lambda i: bool(i.automatic_actions and i.production)
    )
    assert incident.alarm_name == alarm["AlarmName"]
    assert incident.runbook == "docs/runbooks/quality-empty.md"
    assert incident.production["model_version"] == second.name
    assert incident.last_known_good["model_version"] == first.name
    # Its values are the alarm's metric around the change: the bad version's empty answers
    # (the first version's answers all count 0)
    assert any(v["value"] > 0 for v in incident.metric_values), incident.metric_values
    assert incident.changes["drops_added"], "the drop the bad version added is named"
    assert incident.automatic_actions[0]["action"] == "rollback"


def _bad_version_rolls_back(
    platform: LocalPlatform, tmp_path: Path, mode: str, metric: str, topic: str
) -> tuple[str, str]:
    """Deploy a version failing quietly in ``mode``, send traffic until ``metric``'s alarm
    fires; returns (the bad version, the version restored)."""
    good = platform.control_item("production")
    assert good is not None
    platform.emulator.endpoints.quiet_failure = mode
    run = drop_and_follow(platform, [write_drop(tmp_path / f"{topic}.jsonl", topic, 6)])
    assert run.status == "SUCCEEDED", run.cause
    if metric == "Truncated":
        _tighten_truncation_alarm()
    deadline = time.monotonic() + 120
    while not _fired(platform, metric) and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            platform.invoke("Hello", max_new_tokens=4)
        time.sleep(0.5)
    assert _fired(platform, metric), f"the {metric} alarm fires"
    restored = wait_for(
        lambda: (
            (platform.control_item("production") or {}).get("model_version")
            == good["model_version"]
        ),
        timeout=60,
    )
    assert restored, f"the {metric} alarm's rollback restores {good['model_version']}"
    platform.wait_for_endpoint(
        lambda e: (
            e["EndpointStatus"] == "InService"
            and e["EndpointConfigName"] == good["endpoint_config_name"]
        ),
        timeout=120,
    )
    return run.name, str(good["model_version"])


def _tighten_truncation_alarm() -> None:
    """The local stage's tiny random model reaches its token limit on every answer, so the
    stage switches the truncation alarm off (bound 1.0); an operator's tighter bound (0.5)
    makes it watch the version that stops at one token."""
    cloudwatch: Any = boto3.client("cloudwatch")
    (alarm,) = [
        a
        for a in cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm"])["MetricAlarms"]
        if a.get("MetricName") == "Truncated"
    ]
    keep = (
        "AlarmName",
        "AlarmDescription",
        "AlarmActions",
        "OKActions",
        "MetricName",
        "Namespace",
        "Statistic",
        "Dimensions",
        "Period",
        "EvaluationPeriods",
        "ComparisonOperator",
        "TreatMissingData",
    )
    cloudwatch.put_metric_alarm(
        **{k: alarm[k] for k in keep if alarm.get(k) is not None}, Threshold=0.5
    )


def test_a_version_that_refuses_is_rolled_back_and_explained(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    since = now_iso()
    bad, good = _bad_version_rolls_back(platform, tmp_path, "refuse", "Refusal", "sprocket")
    incident = wait_for_incident(
        "Refusal", lambda i: bool(i.automatic_actions and i.production), since=since
    )
    assert incident.runbook == "docs/runbooks/quality-refusal.md"
    assert incident.production["model_version"] == bad
    assert (
        incident.automatic_actions[0]["from_version"],
        incident.automatic_actions[0]["to_version"],
    ) == (bad, good)


def test_a_version_that_truncates_is_rolled_back_and_the_guard_freezes_deployment(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    since = now_iso()
    bad, good = _bad_version_rolls_back(platform, tmp_path, "truncate", "Truncated", "gizmo")
    # The third automatic rollback of the module: the guard freezes automatic deployment
    incident = wait_for_incident(
        "Truncated", lambda i: len(i.automatic_actions) == 2 and bool(i.production), since=since
    )
    assert incident.runbook == "docs/runbooks/quality-truncated.md"
    assert incident.production["model_version"] == bad
    assert [a["action"] for a in incident.automatic_actions] == ["rollback", "freeze"]
    freeze = platform.control_item("freeze")
    assert freeze is not None and freeze["frozen"] is True
    assert "3 automatic rollbacks" in freeze["reason"]
    assert (platform.control_item("production") or {}).get("model_version") == good
