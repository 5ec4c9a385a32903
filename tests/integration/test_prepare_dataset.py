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
    return platform


def put_record(platform: Platform, record_id: str, dataset: str, **content: Any) -> None:
    aws.table(platform.records_table).put_item(
        Item={
            "record_id": record_id,
            "dataset": dataset,
            "drop_id": "d",
            "source_key": f"drops/{dataset}/x.jsonl",
            "line": 1,
            "ingested_at": "2026-01-01T00:00:00+00:00",
            **content,
        }
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
        "train_s3_uri": f"s3://{env.curated_bucket}/{prefix}train.jsonl",
        "dataset_s3_uri": f"s3://{env.curated_bucket}/{prefix}",
        "record_count": 3,
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
