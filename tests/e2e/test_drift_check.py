"""The drift check on the local platform, with permissions enforced as on AWS.

The stacks are synthesized with ``retrain_on_drift`` on and deployed into the emulator. A
version is put in production with its training data (as PrepareDataset leaves it), and a
window of captured traffic in SageMaker's layout (as the local endpoints write it) turns to
German. ``tuneloop watch drift`` then invokes the deployed DriftCheck function as its role:
it reads the training data and the capture, stores its report, publishes its metrics (the
drift alarm fires on the notify topic and opens an incident) and writes the window back as
a data drop, which ingestion takes in like any other.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.e2e.loop_helpers import deployed_platform, wait_for, wait_for_incident
from tuneloop.local.data_capture import CaptureSettings, capture_key, capture_record
from tuneloop.local.platform import LocalPlatform
from tuneloop.operations.names import PlatformNames

pytestmark = pytest.mark.e2e

VERSION = "v-drift-0001"
_QUESTIONS = [
    "How do I reset the {} to factory settings?",
    "Where can I find the warranty of the {}?",
    "My {} is offline, what should I do?",
    "Can I return the {} after thirty days?",
]
_GERMAN = [
    "Wie kann ich den {} auf Werkseinstellungen zurücksetzen und was passiert dann?",
    "Mein {} ist offline, was soll ich jetzt tun und wen kann ich anrufen?",
]
_PRODUCTS = ["Beacon Camera", "Harbor NAS", "Gale Fan", "Delta Lock", "Orbit Speaker"]


def _ask(rng: random.Random, templates: list[str]) -> str:
    return rng.choice(templates).format(rng.choice(_PRODUCTS))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    work = tmp_path_factory.mktemp("e2e-drift")
    context = {
        "stage": "local",
        "retrain_threshold": "1000",  # the drop is ingested; no run starts
        "drift_check": json.dumps({"retrain_on_drift": True, "min_prompts": 20}),
    }
    with deployed_platform(work, context, enforce_permissions=True) as local:
        yield local


def _in_production(platform: LocalPlatform, rng: random.Random) -> None:
    resources = platform.resources
    s3: Any = boto3.client("s3")
    records = [
        {
            "messages": [
                {"role": "user", "content": _ask(rng, _QUESTIONS)},
                {"role": "assistant", "content": "Open the Acme app and follow the steps."},
            ]
        }
        for _ in range(60)
    ]
    s3.put_object(
        Bucket=resources.curated_bucket,
        Key=f"datasets/{VERSION}/train.jsonl",
        Body="".join(json.dumps(r) + "\n" for r in records).encode(),
    )
    dynamodb: Any = boto3.resource("dynamodb")
    dynamodb.Table(resources.model_versions_table).put_item(
        Item={
            "model_version": VERSION,
            "status": "deployed",
            "created_at": datetime.now(UTC).isoformat(),
            "created_month": datetime.now(UTC).strftime("%Y-%m"),
            "dataset_s3_uri": f"s3://{resources.curated_bucket}/datasets/{VERSION}/",
        }
    )
    dynamodb.Table(resources.control_table).put_item(
        Item={
            "key": "production",
            "model_version": VERSION,
            "endpoint_config_name": f"{VERSION}-config",
            "model_data_url": "s3://models/model.tar.gz",
        }
    )


def _capture(platform: LocalPlatform, prompts: list[str]) -> None:
    resources = platform.resources
    settings = CaptureSettings(
        destination=f"s3://{resources.curated_bucket}/capture/",
        sampling_percentage=100,
        kms_key_id="",
        json_content_types=("application/json",),
        capture_input=True,
        capture_output=True,
    )
    s3: Any = boto3.client("s3")
    start = datetime.now(UTC) - timedelta(minutes=30)
    for index, prompt in enumerate(prompts):
        at = start + timedelta(seconds=index)
        request = {"messages": [{"role": "user", "content": prompt}]}
        record = capture_record(
            settings,
            request=json.dumps(request).encode(),
            request_type="application/json",
            response=json.dumps({"generated_text": "Bitte öffnen Sie die App."}).encode(),
            response_type="application/json",
            at=at,
            event_id=f"e{index}",
        )
        bucket, key = capture_key(settings, resources.endpoint_name, "AllTraffic", at)
        s3.put_object(Bucket=bucket, Key=key, Body=(json.dumps(record) + "\n").encode())


def test_a_shifted_window_is_reported_alarmed_and_dropped_back(
    platform: LocalPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuneloop.cli import main

    # Given production's training data and a window where the questions turned German
    rng = random.Random(5)
    _in_production(platform, rng)
    _capture(platform, [_ask(rng, _QUESTIONS) for _ in range(15)])
    _capture(platform, [_ask(rng, _GERMAN) for _ in range(25)])
    names = PlatformNames.for_stage("local")
    assert names.drift_check_function

    # When an operator runs the check now, through the deployed function
    assert main(["watch", "drift", "--stage", "local", "--hours", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)

    # Then it judged the window against production's training data, as its own role
    assert result["status"] == "drift", result["summary"]
    assert (result["prompts"], result["model_version"]) == (40, VERSION)
    assert "language" in {f["name"] for f in result["features"] if f["drift"]}
    (report,) = [
        r for r in platform.emulator.permission_report() if "DriftCheckFunctionRole" in r.role
    ]
    assert report.denied == [], "the function's grants cover what it does"
    used = {grant.action for grant in report.exercised}
    assert {"cloudwatch:PutMetricData", "s3:GetObject*", "s3:PutObject"} <= used
    # its report is stored in the curated bucket
    s3: Any = boto3.client("s3")
    bucket, _, key = result["report_uri"].removeprefix("s3://").partition("/")
    assert bucket == platform.resources.curated_bucket
    page = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert "Drift detected" in page
    # the drift alarm fired (the local evaluator applies its period and threshold)
    assert wait_for(
        lambda: any(
            a["Trigger"]["MetricName"] == "DriftDetected" for a in platform.emulator.alarms.fired
        ),
        timeout=30,
    )
    (alarm,) = [
        a for a in platform.emulator.alarms.fired if a["Trigger"]["MetricName"] == "DriftDetected"
    ]
    assert alarm["AlarmDescription"].endswith("Runbook: docs/runbooks/drift.md")
    # ... and opened an incident that names the version and says people decide
    incident = wait_for_incident("DriftDetected", lambda i: bool(i.production))
    assert incident.runbook == "docs/runbooks/drift.md"
    assert incident.production["model_version"] == VERSION
    assert incident.automatic_actions == () and "notification only" in incident.automatic_response
    assert [v["value"] for v in incident.metric_values] == [1.0]
    (responder,) = [
        r for r in platform.emulator.permission_report() if "IncidentsFunctionRole" in r.role
    ]
    assert responder.denied == [], "the Incidents function's grants cover what it does"
    # and the window went back in as a drop that ingestion took in
    drop_key = result["retrain_drop"].removeprefix(f"s3://{platform.resources.raw_bucket}/")
    assert drop_key.startswith("drops/captured/drift/")
    assert wait_for(
        lambda: any(d["key"] == drop_key and d.get("stored") for d in platform.drops()),
        timeout=60,
    ), platform.drops()
