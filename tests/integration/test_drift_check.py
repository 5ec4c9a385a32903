"""The DriftCheck function over moto: the production version's training data against a window
of captured traffic (written as the local endpoints write it), the verdict, its report and
metrics, and the retrain drop only with ``retrain_on_drift``."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.drift_check.handler import handler as drift_check
from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    put_version,
)
from tuneloop import aws
from tuneloop.dataset_lineage import Lineage, PoolFile, PoolWriter, lineage_key
from tuneloop.datasets import replay_rank
from tuneloop.ingest.manifest import load_manifest
from tuneloop.ingest.redaction import all_redactors
from tuneloop.local.data_capture import CaptureSettings, capture_key, capture_record
from tuneloop.release.control import Release, replace_production
from tuneloop.watch.capture import parse_capture_line
from tuneloop.watch.commands import render_drift
from tuneloop.watch.drift_reference import LINEAGE, TRAIN_FILE, read_reference
from tuneloop.watch.drift_service import NAMESPACE
from tuneloop.watch.drift_settings import DriftCheckSettings

WHEN = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
ENDPOINT = "tuneloop-endpoint"
_TOPICS = ["invoice", "refund", "password", "delivery address", "contract", "plan"]
_PRODUCTS = ["the router", "my phone plan", "the app", "the web portal", "my account"]
_ENGLISH = [
    "How do I change my {t} for {p}?",
    "Where can I see my {t} in {p}?",
    "Can you help me with my {t} on {p}?",
    "What is the fastest way to update my {t} for {p}?",
]
_GERMAN = [
    "Wie kann ich meine {t} für {p} ändern und was muss ich dafür tun?",
    "Ich möchte meinen Vertrag kündigen, wie geht das mit {p}?",
    "Warum ist meine Rechnung in diesem Monat so hoch und wen kann ich fragen?",
]


def _question(rng: random.Random, templates: list[str]) -> str:
    return rng.choice(templates).format(t=rng.choice(_TOPICS), p=rng.choice(_PRODUCTS))


def _record(question: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You are Acme's support assistant."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": "Open the portal and follow the steps."},
        ]
    }


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record) + "\n").encode()


def write_dataset(platform: Platform, version: str, records: list[dict[str, Any]]) -> None:  # noqa: F811
    """``datasets/<version>/``: train.jsonl and a lineage whose pool holds the records, as
    PrepareDataset writes them."""
    s3, bucket, prefix = aws.s3(), platform.curated_bucket, f"datasets/{version}/"
    s3.put_object(Bucket=bucket, Key=f"{prefix}train.jsonl", Body=b"".join(map(_line, records)))
    pool = PoolWriter()
    for index, record in enumerate(records):
        record_id = f"{version}-{index}"
        pool.add(replay_rank(record_id), record_id, _line(record), earlier=False)
    pool_file = pool.upload(bucket, lineage_key(prefix, "pool.jsonl"))
    lineage = Lineage(watermark=WHEN.isoformat(), pools=(pool_file,))
    s3.put_object(Bucket=bucket, Key=lineage_key(prefix, "lineage.json"), Body=lineage.to_json())


def in_production(platform: Platform, version: str = "v0003") -> None:  # noqa: F811
    put_version(
        platform.model_versions_table,
        version,
        status="deployed",
        dataset_s3_uri=f"s3://{platform.curated_bucket}/datasets/{version}/",
    )
    replace_production(
        platform.control_table,
        Release(version, f"{version}-config", "s3://models/model.tar.gz"),
        last_known_good=None,
        expected=None,
    )


def capture(platform: Platform, prompts: list[str], *, hours_before: float = 2) -> None:  # noqa: F811
    """One capture object per invocation in SageMaker's layout, as the local endpoint
    writes it (tuneloop/local/data_capture.py), within the hours before ``WHEN``."""
    settings = CaptureSettings(
        destination=f"s3://{platform.curated_bucket}/capture/",
        sampling_percentage=100,
        kms_key_id="",
        json_content_types=("application/json",),
        capture_input=True,
        capture_output=True,
    )
    for index, prompt in enumerate(prompts):
        at = WHEN - timedelta(hours=hours_before) + timedelta(seconds=index)
        request = {
            "messages": [{"role": "user", "content": prompt}],
            "parameters": {"max_new_tokens": 16},
        }
        record = capture_record(
            settings,
            request=json.dumps(request).encode(),
            request_type="application/json",
            response=json.dumps({"generated_text": f"Answer {index}."}).encode(),
            response_type="application/json",
            at=at,
            event_id=f"e{index}",
        )
        bucket, key = capture_key(settings, ENDPOINT, "AllTraffic", at)
        aws.s3().put_object(Bucket=bucket, Key=key, Body=(json.dumps(record) + "\n").encode())


def use_env(
    monkeypatch: pytest.MonkeyPatch,
    platform: Platform,  # noqa: F811
    settings: DriftCheckSettings,
) -> None:
    for name, value in {
        "CURATED_BUCKET": platform.curated_bucket,
        "RAW_BUCKET": platform.raw_bucket,
        "CONTROL_TABLE": platform.control_table,
        "MODEL_VERSIONS_TABLE": platform.model_versions_table,
        "ENDPOINT_NAME": ENDPOINT,
        "DRIFT_CHECK_SETTINGS": settings.to_json(),
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def trained(platform: Platform) -> Iterator[Platform]:  # noqa: F811
    """v0003 in production, trained on 300 English support questions."""
    rng = random.Random(7)
    write_dataset(platform, "v0003", [_record(_question(rng, _ENGLISH)) for _ in range(300)])
    in_production(platform)
    yield platform


def _event() -> dict[str, str]:
    return {"trigger": "scheduled", "scheduled_time": "2026-12-03T06:00:00Z"}


def _metrics(name: str) -> list[float]:
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}],
        StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    return [float(p["Maximum"]) for p in points]


def _object(bucket: str, uri: str) -> bytes:
    assert uri.startswith(f"s3://{bucket}/")
    key = uri.removeprefix(f"s3://{bucket}/")
    return aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read()


def _raw_keys(platform: Platform) -> list[str]:  # noqa: F811
    listed = aws.s3().list_objects_v2(Bucket=platform.raw_bucket, Prefix="drops/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_shifted_window_drifts_with_its_report_metrics_and_retrain_drop(
    trained: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given retrain_on_drift, and a window where half the prompts are German questions
    use_env(monkeypatch, trained, DriftCheckSettings(retrain_on_drift=True))
    rng = random.Random(11)
    capture(trained, [_question(rng, _ENGLISH) for _ in range(60)])
    capture(trained, [_question(rng, _GERMAN) for _ in range(60)], hours_before=1)
    capture(trained, ["outside the window"] * 5, hours_before=30)

    # When the schedule invokes the check
    result = drift_check(_event(), lambda_context())

    # Then it judged the 120 prompts of the window against production's training data
    assert (result["status"], result["drift_detected"]) == ("drift", True)
    assert (result["prompts"], result["model_version"]) == (120, "v0003")
    assert result["reference"]["source"] == LINEAGE
    assert result["reference"]["prompts"] == 300
    assert (result["window_start"], result["window_end"]) == (
        "2026-12-02T06:00:00Z",
        "2026-12-03T06:00:00Z",
    )
    drifting = {f["name"] for f in result["features"] if f["drift"]}
    assert "language" in drifting
    assert result["summary"].startswith("drift in ")
    # its report and result are stored under the window's end
    prefix = f"s3://{trained.curated_bucket}/watch/drift/{ENDPOINT}/20261203T060000Z/"
    assert result["report_uri"] == prefix + "report.html"
    page = _object(trained.curated_bucket, result["report_uri"]).decode()
    assert "Drift detected" in page and 'id="language"' in page
    assert "Wie kann ich" not in page  # features and n-grams, never the prompts
    stored = json.loads(_object(trained.curated_bucket, result["result_uri"]))
    assert stored == json.loads(json.dumps(result))
    # the metrics the alarm and the dashboard read
    assert _metrics("DriftDetected") == [1.0]
    assert _metrics("Prompts") == [120.0]
    assert _metrics("MaxPsi")[0] >= 0.2
    assert _metrics("ClassifierAuc")[0] == pytest.approx(result["classifier"]["auc"])
    # and the window's redacted exchanges went back in as a drop, its manifest beside it
    drop = result["retrain_drop"]
    key = f"drops/captured/drift/{ENDPOINT}/20261203T060000Z.jsonl"
    assert drop == f"s3://{trained.raw_bucket}/{key}"
    assert sorted(_raw_keys(trained)) == [key, key + ".manifest.json"]
    manifest = load_manifest(trained.raw_bucket, key, dataset="captured")
    assert manifest.source == "drift_check"
    lines = _object(trained.raw_bucket, drop).decode().splitlines()
    assert len(lines) == 120
    first = json.loads(lines[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    # the CLI's rendering names the verdict, each feature and the report
    shown = render_drift(result)
    assert "DRIFT" in shown and "language" in shown and result["report_uri"] in shown


def test_an_unshifted_window_does_not_drift_and_writes_no_drop(
    trained: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, trained, DriftCheckSettings(retrain_on_drift=True))
    rng = random.Random(12)
    capture(trained, [_question(rng, _ENGLISH) for _ in range(120)])

    result = drift_check(_event(), lambda_context())

    assert (result["status"], result["drift_detected"]) == ("no_drift", False), result["summary"]
    assert result["retrain_drop"] == "" and _raw_keys(trained) == []
    assert _metrics("DriftDetected") == [0.0]
    page = _object(trained.curated_bucket, result["report_uri"]).decode()
    assert "No drift" in page


def test_drift_without_retrain_on_drift_writes_no_drop(
    trained: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, trained, DriftCheckSettings())
    rng = random.Random(13)
    capture(trained, [_question(rng, _GERMAN) for _ in range(80)])

    result = drift_check(_event(), lambda_context())

    assert result["drift_detected"] is True
    assert result["retrain_drop"] == "" and _raw_keys(trained) == []


def test_too_few_prompts_is_reported_and_not_alarmed_on(
    trained: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, trained, DriftCheckSettings(min_prompts=50))
    rng = random.Random(14)
    capture(trained, [_question(rng, _GERMAN) for _ in range(10)])

    result = drift_check(_event(), lambda_context())

    assert result["status"] == "too_few_prompts" and result["drift_detected"] is False
    assert "too few prompts: 10 captured" in result["summary"]
    assert _metrics("DriftDetected") == []  # the alarm keeps its state
    assert _metrics("Prompts") == [10.0]
    page = _object(trained.curated_bucket, result["report_uri"]).decode()
    assert "Not judged" in page


def test_a_manual_window_of_a_few_hours(trained: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, trained, DriftCheckSettings(min_prompts=10))
    rng = random.Random(15)
    capture(trained, [_question(rng, _ENGLISH) for _ in range(20)], hours_before=1)
    capture(trained, [_question(rng, _GERMAN) for _ in range(20)], hours_before=5)

    event = {"trigger": "manual", "scheduled_time": "2026-12-03T06:00:00Z", "window_hours": 2}
    result = drift_check(event, lambda_context())

    assert (result["prompts"], result["window_hours"], result["trigger"]) == (20, 2, "manual")
    assert result["window_start"] == "2026-12-03T04:00:00Z"


def test_nothing_in_production_has_nothing_to_compare(
    platform: Platform,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_env(monkeypatch, platform, DriftCheckSettings())

    result = drift_check(_event(), lambda_context())

    assert result["status"] == "no_production" and "nothing is in production" in result["summary"]
    assert _metrics("Prompts") == []


def test_the_reference_is_a_bounded_ranged_read(platform: Platform) -> None:  # noqa: F811
    # Given a data set of 20,000 records (several MB) without lineage, and one with it whose
    # ancestor's pool is listed too
    rng = random.Random(16)
    big = [_record(_question(rng, _ENGLISH) + " " + "detail " * 20) for _ in range(20_000)]
    s3 = aws.s3()
    s3.put_object(
        Bucket=platform.curated_bucket,
        Key="datasets/v0001/train.jsonl",
        Body=b"".join(map(_line, big)) + b"\n".join([b'{"text": "a document, no prompt"}'] * 3),
    )
    calls: list[dict[str, Any]] = []
    s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: calls.append(params)
    )

    # When 100 prompts are wanted
    reference = read_reference(
        platform.curated_bucket, "datasets/v0001/", 100, model_version="v0001"
    )

    # Then 100 are read with byte ranges, not the whole object
    assert (reference.source, len(reference.texts), reference.records_read) == (
        TRAIN_FILE,
        100,
        100,
    )
    ranged = [c for c in calls if c["Key"].endswith("train.jsonl")]
    assert ranged and all(c.get("Range", "").startswith("bytes=") for c in ranged)
    assert len(ranged) <= 2
    # the prompt is the user side only (no system prompt, no answer)
    assert reference.texts[0] == big[0]["messages"][1]["content"]


def test_the_lineage_reference_samples_every_ancestor(platform: Platform) -> None:  # noqa: F811
    # Given v0002 trained on billing questions and v0003, its child, on delivery questions:
    # v0003's lineage lists both pools, as PrepareDataset inherits them
    billing = [_record(f"Where is my invoice number {i}?") for i in range(200)]
    delivery = [_record(f"Where is my parcel number {i}?") for i in range(200)]
    write_dataset(platform, "v0002", billing)
    write_dataset(platform, "v0003", delivery)
    pools = tuple(
        PoolFile(f"datasets/{version}/lineage/pool.jsonl", 200) for version in ("v0002", "v0003")
    )
    aws.s3().put_object(
        Bucket=platform.curated_bucket,
        Key="datasets/v0003/lineage/lineage.json",
        Body=Lineage(watermark=WHEN.isoformat(), pools=pools).to_json(),
    )

    # When production's reference is read
    reference = read_reference(
        platform.curated_bucket, "datasets/v0003/", 100, model_version="v0003"
    )

    # Then it is a sample of both (by replay rank), not of the newest data alone
    invoices = sum("invoice" in text for text in reference.texts)
    assert reference.source == LINEAGE and len(reference.texts) == 100
    assert 25 <= invoices <= 75


def test_our_containers_request_formats_are_read_as_prompts() -> None:
    def line(body: dict[str, Any]) -> str:
        data = {"endpointInput": {"data": json.dumps(body), "encoding": "JSON"}}
        return json.dumps({"captureData": data})

    chat = {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    }
    prompts = [
        parse_capture_line(line(body), all_redactors())
        for body in (chat, {"prompt": "Mail me at a@b.example"}, {"inputs": "LMI style"})
    ]

    assert [(p.prompt, p.prompt_redactions) for p in prompts if p] == [
        ("Hi", 0),
        ("Mail me at <EMAIL>", 1),
        ("LMI style", 0),
    ]
