"""PrepareDataset against moto: the training set, its manifest, lineage and the champion."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from lambdas.prepare_dataset.handler import handler
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tests.integration.dataset_fixtures import add_record
from tuneloop import aws
from tuneloop.datasets import EmptyDatasetError

__all__ = ["aws_credentials", "platform"]

EVENT = {
    "execution_name": "v0002-20260101-000000",
    "execution_arn": (
        "arn:aws:states:us-east-1:123456789012:execution:retrain:v0002-20260101-000000"
    ),
}
CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "prepare_dataset")
    # These tests are about the training export: nothing held out unless a test says so.
    monkeypatch.setenv("HELDOUT_FRACTION", "0")
    return platform


def put_record(platform: Platform, record_id: str, dataset: str, **content: Any) -> None:
    """A stored record (also in its drop's curated copy); ``ingested_at`` overrides the
    Records item's time for the scan's old/new split."""
    ingested_at = str(content.pop("ingested_at", "2026-01-01T00:00:00+00:00"))
    if "messages" in content:
        content = {"messages": json.loads(str(content["messages"]))}
    add_record(platform, record_id, dataset, content)
    aws.table(platform.records_table).update_item(
        Key={"record_id": record_id},
        UpdateExpression="SET ingested_at = :at",
        ExpressionAttributeValues={":at": ingested_at},
    )


def read(platform: Platform, key: str) -> bytes:
    return aws.s3().get_object(Bucket=platform.curated_bucket, Key=key)["Body"].read()


def test_stored_records_become_the_training_set_with_manifest_and_lineage(env: Platform) -> None:
    # Given two text records, a chat record and a production champion
    put_record(env, "a", "support", text="first")
    put_record(env, "b", "support", text="second")
    put_record(env, "c", "chat", messages=json.dumps(CHAT))
    aws.table(env.control_table).put_item(
        Item={
            "key": "production",
            "model_version": "v0001-20251201-000000",
            "endpoint_config_name": "v0001-config-1",
            "model_data_url": "s3://tuneloop-artifacts/jobs/v0001-train/output/model.tar.gz",
        }
    )

    # When the PrepareDataset step runs
    result = handler(EVENT, lambda_context())

    # Then the JSONL holds one training object per record ...
    prefix = "datasets/v0002-20260101-000000/"
    body = read(env, f"{prefix}train.jsonl")
    lines = [json.loads(line) for line in body.splitlines()]
    assert sorted(json.dumps(line, sort_keys=True) for line in lines) == sorted(
        json.dumps(line, sort_keys=True)
        for line in ({"text": "first"}, {"text": "second"}, {"messages": CHAT})
    )
    # ... the result follows the contract and names the champion ...
    assert result == {
        "model_version": "v0002-20260101-000000",
        "model_line": "",  # no model lines: the one model
        "train_s3_uri": f"s3://{env.curated_bucket}/{prefix}train.jsonl",
        "dataset_s3_uri": f"s3://{env.curated_bucket}/{prefix}",
        "heldout_s3_uri": f"s3://{env.curated_bucket}/{prefix}heldout/",
        "replay_s3_uri": f"s3://{env.curated_bucket}/{prefix}replay/",
        "record_count": 3,
        "heldout_count": 0,
        "replay_count": 0,  # the champion has no lineage item: every record is new
        "dataset_sha256": hashlib.sha256(body).hexdigest(),
        "champion_version": "v0001-20251201-000000",
        "champion_model_data": "s3://tuneloop-artifacts/jobs/v0001-train/output/model.tar.gz",
        # No benchmark versions stored or uploaded: today's prefix, nothing frozen.
        "benchmarks_s3_uri": f"s3://{env.artifacts_bucket}/benchmarks/",
        "benchmark_versions": {},
    }
    # ... the manifest counts per dataset ...
    manifest = json.loads(read(env, f"{prefix}manifest.json"))
    assert manifest["sha256"] == result["dataset_sha256"]
    assert (manifest["record_count"], manifest["datasets"]) == (3, {"chat": 1, "support": 2})
    # ... and the version item records the lineage
    item = aws.table(env.model_versions_table).get_item(
        Key={"model_version": EVENT["execution_name"]}
    )["Item"]
    assert item["status"] == "training"
    assert item["parent_version"] == "v0001-20251201-000000"
    assert (item["record_count"], item["dataset_sha256"]) == (3, result["dataset_sha256"])
    assert item["execution_arn"] == EVENT["execution_arn"]


def test_without_a_champion_the_champion_fields_are_empty(env: Platform) -> None:
    put_record(env, "a", "default", text="only")
    result = handler(EVENT, lambda_context())
    assert (result["champion_version"], result["champion_model_data"]) == ("", "")


def test_every_page_of_the_records_table_is_exported(env: Platform) -> None:
    # 15 records of 100 KB: more than one 1 MB scan page
    for index in range(15):
        put_record(env, f"r{index:02d}", "default", text=f"{index} " + "x" * 100_000)
    result = handler(EVENT, lambda_context())
    assert result["record_count"] == 15
    assert len(read(env, "datasets/v0002-20260101-000000/train.jsonl").splitlines()) == 15


def test_no_records_is_a_clear_error(env: Platform) -> None:
    with pytest.raises(EmptyDatasetError, match="no stored records"):
        handler(EVENT, lambda_context())


# --- held-out slice and replay sample -------------------------------------------------------


def export(env: Platform, name: str) -> dict[str, Any]:
    return handler({**EVENT, "execution_name": name}, lambda_context())


def lines_of(env: Platform, key: str) -> list[str]:
    return read(env, key).decode("utf-8").splitlines()


def test_heldout_slice_is_disjoint_from_training_stable_and_capped(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneloop.datasets import heldout_rank

    monkeypatch.setenv("HELDOUT_FRACTION", "0.2")
    monkeypatch.setenv("HELDOUT_MAX_RECORDS", "1000")
    for index in range(60):
        put_record(env, f"r{index:02d}", "default", text=f"record {index}")
    first = export(env, "v0001-20260101-000000")
    prefix = "datasets/v0001-20260101-000000/"
    heldout = set(lines_of(env, f"{prefix}heldout/heldout.jsonl"))
    train = set(lines_of(env, f"{prefix}train.jsonl"))
    expected = {
        json.dumps({"text": f"record {i}"}) for i in range(60) if heldout_rank(f"r{i:02d}") < 0.2
    }
    assert heldout == expected and 0 < len(heldout) < 60
    assert heldout.isdisjoint(train) and len(heldout | train) == 60
    assert (first["heldout_count"], first["record_count"]) == (len(heldout), 60 - len(heldout))

    # The same records in another run: the same slice, byte for byte.
    export(env, "v0002-20260101-000000")
    again = read(env, "datasets/v0002-20260101-000000/heldout/heldout.jsonl")
    assert again == read(env, f"{prefix}heldout/heldout.jsonl")

    # A cap keeps the lowest-ranked records; the rest are trained on.
    monkeypatch.setenv("HELDOUT_MAX_RECORDS", "2")
    capped = export(env, "v0003-20260101-000000")
    kept = lines_of(env, "datasets/v0003-20260101-000000/heldout/heldout.jsonl")
    lowest = sorted(range(60), key=lambda i: heldout_rank(f"r{i:02d}"))[:2]
    assert kept == [json.dumps({"text": f"record {i}"}) for i in lowest]
    assert capped["record_count"] == 58


def test_with_a_champion_only_new_records_train_and_earlier_ones_are_replayed(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneloop.datasets import heldout_rank, replay_rank

    monkeypatch.setenv("HELDOUT_FRACTION", "0.1")
    monkeypatch.setenv("REPLAY_RATIO", "0.5")
    for index in range(40):
        put_record(env, f"old{index:02d}", "default", text=f"old {index}")
    for index in range(10):
        put_record(
            env,
            f"new{index:02d}",
            "default",
            text=f"new {index}",
            ingested_at="2026-02-01T00:00:00+00:00",
        )
    # The champion's data set was exported between the two ingests.
    aws.table(env.model_versions_table).put_item(
        Item={"model_version": "v0001-20260115-000000", "created_at": "2026-01-15T00:00:00+00:00"}
    )
    aws.table(env.control_table).put_item(
        Item={
            "key": "production",
            "model_version": "v0001-20260115-000000",
            "endpoint_config_name": "c",
            "model_data_url": "s3://a/model.tar.gz",
        }
    )
    result = handler(EVENT, lambda_context())
    prefix = "datasets/v0002-20260101-000000/"
    new = [f"new{i:02d}" for i in range(10) if heldout_rank(f"new{i:02d}") >= 0.1]
    old = [f"old{i:02d}" for i in range(40) if heldout_rank(f"old{i:02d}") >= 0.1]
    train = lines_of(env, f"{prefix}train.jsonl")
    assert sorted(train) == sorted(json.dumps({"text": f"new {int(r[3:])}"}) for r in new)
    replay = lines_of(env, f"{prefix}replay/replay.jsonl")
    count = -(-len(new) // 2)  # ceil(0.5 * new records)
    chosen = sorted(old, key=replay_rank)[:count]
    assert sorted(replay) == sorted(json.dumps({"text": f"old {int(r[3:])}"}) for r in chosen)
    assert (result["record_count"], result["replay_count"]) == (len(new), count)
    heldout = lines_of(env, f"{prefix}heldout/heldout.jsonl")
    assert set(heldout).isdisjoint(train) and set(heldout).isdisjoint(replay)
