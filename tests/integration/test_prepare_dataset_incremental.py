"""PrepareDataset's incremental read (drops since the champion, its lineage) against the
full scan of the Records table: the same selection, and reads that skip the history."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.aws_fixtures import Platform, aws_credentials, platform
from tests.integration.dataset_fixtures import put_drop
from tuneloop import aws
from tuneloop.aws_reads import counting
from tuneloop.datasets import DatasetLocations, SplitSettings, prepare_dataset

__all__ = ["aws_credentials", "platform"]

SPLIT = SplitSettings(heldout_fraction=0.2, heldout_max_records=10, replay_ratio=0.5)


def where(platform: Platform) -> DatasetLocations:
    return DatasetLocations(
        records_table=platform.records_table,
        drops_table=platform.drops_table,
        control_table=platform.control_table,
        curated_bucket=platform.curated_bucket,
        artifacts_bucket=platform.artifacts_bucket,
        model_versions_table=platform.model_versions_table,
    )


def prepare(platform: Platform, name: str, read: str = "") -> dict[str, Any]:
    return prepare_dataset(
        execution_name=name, execution_arn="", where=where(platform), split=SPLIT, read=read
    )


def crown(platform: Platform, model_version: str) -> None:
    aws.table(platform.control_table).put_item(
        Item={
            "key": "production",
            "model_version": model_version,
            "endpoint_config_name": f"{model_version}-config",
            "model_data_url": f"s3://a/{model_version}/model.tar.gz",
        }
    )


def texts(prefix: str, count: int) -> dict[str, dict[str, Any]]:
    return {f"{prefix}{i:03d}": {"text": f"{prefix} record {i}"} for i in range(count)}


def body(platform: Platform, name: str, key: str) -> bytes:
    obj = aws.s3().get_object(Bucket=platform.curated_bucket, Key=f"datasets/{name}/{key}")
    return bytes(obj["Body"].read())


def same_selection(platform: Platform, scan: str, incremental: str) -> None:
    for key in ("heldout/heldout.jsonl", "replay/replay.jsonl"):
        assert body(platform, scan, key) == body(platform, incremental, key), key
    assert sorted(body(platform, scan, "train.jsonl").splitlines()) == sorted(
        body(platform, incremental, "train.jsonl").splitlines()
    )


def test_incremental_and_scan_select_the_same_heldout_replay_and_training_sets(
    platform: Platform,
) -> None:
    # Given a first model prepared from three drops (one in two parts, one a chat dataset)
    put_drop(platform, "a", "support", texts("a", 30))
    put_drop(platform, "b", "support", texts("b", 20))
    put_drop(
        platform,
        "c",
        "chat",
        {"c1": {"messages": [{"role": "user", "content": "hi"}]}},
    )
    first = prepare(platform, "v0001")
    assert first["record_count"] + first["heldout_count"] == 51
    crown(platform, "v0001")

    # When new drops arrive and both ways read the second run
    put_drop(platform, "d", "support", texts("d", 16))
    scan = prepare(platform, "v0002-scan", read="scan")
    incremental = prepare(platform, "v0002")

    # Then they choose the same records: the cap moved earlier records out of the slice
    # into the replay pool, and the replay sample is the lowest replay ranks of the pool
    assert {k: scan[k] for k in ("record_count", "heldout_count", "replay_count")} == {
        k: incremental[k] for k in ("record_count", "heldout_count", "replay_count")
    }
    assert incremental["replay_count"] > 0 and incremental["heldout_count"] == 10
    same_selection(platform, "v0002-scan", "v0002")

    # ... and again one generation on, from the incremental run's own lineage
    crown(platform, "v0002")
    put_drop(platform, "e", "support", texts("e", 24))
    prepare(platform, "v0003-scan", read="scan")
    prepare(platform, "v0003")
    same_selection(platform, "v0003-scan", "v0003")


def test_incremental_run_reads_no_records_item_and_only_the_new_drops(
    platform: Platform,
) -> None:
    # Given a champion prepared from a large history and one new drop
    put_drop(platform, "old", "support", texts("old", 200))
    prepare(platform, "v0001")
    crown(platform, "v0001")
    put_drop(platform, "new", "support", texts("new", 10))

    # When the next run prepares its data set
    with counting() as reads:
        result = prepare(platform, "v0002")

    # Then it reads no Records item and only the new drop's curated copy
    assert reads.items[platform.records_table] == 0
    assert reads.requests["s3.GetObject"] > 0
    new_copy = aws.s3().head_object(
        Bucket=platform.curated_bucket, Key="curated/support/new/part-00000.jsonl"
    )["ContentLength"]
    assert reads.s3_bytes["curated"] == new_copy
    assert result["record_count"] == sum(
        1 for line in body(platform, "v0002", "train.jsonl").splitlines() if b"new" in line
    )
    # ... while the scan reads every item
    with counting() as scanned:
        prepare(platform, "v0002-scan", read="scan")
    assert scanned.items[platform.records_table] == 210


def test_drops_still_processing_or_fully_quarantined_add_nothing_until_complete(
    platform: Platform,
) -> None:
    # Given a complete drop, one still processing and one whose records were all quarantined
    put_drop(platform, "done", "support", texts("done", 5))
    put_drop(platform, "busy", "support", texts("busy", 5), status="processing", curated=False)
    put_drop(platform, "quarantined", "support", {}, curated=False)

    # When a first model is prepared
    first = prepare(platform, "v0001")
    lines = body(platform, "v0001", "train.jsonl") + body(
        platform, "v0001", "heldout/heldout.jsonl"
    )

    # Then only the complete drop's records are in it
    assert first["record_count"] + first["heldout_count"] == 5
    assert b"busy" not in lines
    manifest = json.loads(body(platform, "v0001", "manifest.json"))
    assert manifest["read"] == "incremental"
    # ... and the manifest names the drop it added, with its records
    assert manifest["drops"] == {"done": {"records": 5, "dataset": "support"}}

    # ... and the drop that completes later is taken by the next run, once
    crown(platform, "v0001")
    put_drop(platform, "busy", "support", texts("busy", 5))
    prepare(platform, "v0002")
    taken = body(platform, "v0002", "train.jsonl") + body(
        platform, "v0002", "heldout/heldout.jsonl"
    )
    assert taken.count(b"busy record") == 5
    assert set(json.loads(body(platform, "v0002", "manifest.json"))["drops"]) == {"busy"}
    assert b"done" not in body(platform, "v0002", "train.jsonl")
    crown(platform, "v0002")
    put_drop(platform, "late", "support", texts("late", 3))
    prepare(platform, "v0003")
    third = body(platform, "v0003", "train.jsonl")
    assert b"busy" not in third and b"late record" in third


def test_a_champion_without_lineage_is_read_by_a_scan_once(platform: Platform) -> None:
    # Given a champion whose data set was prepared before lineage existed
    put_drop(platform, "a", "support", texts("a", 10), ingested_at="2026-01-01T00:00:00+00:00")
    aws.table(platform.model_versions_table).put_item(
        Item={
            "model_version": "v0001",
            "created_at": "2026-01-15T00:00:00+00:00",
            "dataset_s3_uri": f"s3://{platform.curated_bucket}/datasets/v0001/",
        }
    )
    crown(platform, "v0001")
    put_drop(platform, "b", "support", texts("b", 10))

    # When the next two runs prepare their data sets
    second = prepare(platform, "v0002")
    crown(platform, "v0002")
    put_drop(platform, "c", "support", texts("c", 4))
    third = prepare(platform, "v0003")

    # Then the first scans (and writes a lineage), the second is incremental from it
    assert json.loads(body(platform, "v0002", "manifest.json"))["read"] == "scan"
    assert json.loads(body(platform, "v0003", "manifest.json"))["read"] == "incremental"
    assert second["replay_count"] > 0 and third["replay_count"] > 0
    assert b"b record" not in body(platform, "v0003", "train.jsonl")


@pytest.mark.parametrize("range_bytes", [64, 1 << 20])
def test_replay_pool_is_read_by_byte_ranges_up_to_the_sample(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, range_bytes: int
) -> None:
    from tuneloop import dataset_lineage

    monkeypatch.setattr(dataset_lineage, "RANGE_BYTES", range_bytes)
    put_drop(platform, "old", "support", texts("old", 300))
    prepare(platform, "v0001")
    crown(platform, "v0001")
    put_drop(platform, "new", "support", texts("new", 4))
    with counting() as reads:
        result = prepare(platform, "v0002")
    pool = aws.s3().head_object(
        Bucket=platform.curated_bucket, Key="datasets/v0001/lineage/pool.jsonl"
    )["ContentLength"]
    replay = body(platform, "v0002", "replay/replay.jsonl").splitlines()
    assert len(replay) == result["replay_count"] > 0
    # Small ranges read a prefix of the champion's pool; one large range reads it all.
    if range_bytes < pool:
        assert reads.s3_bytes["datasets"] < pool


def test_a_pool_file_reads_back_whole_and_sorted_at_any_range_size(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneloop import dataset_lineage
    from tuneloop.dataset_lineage import PoolWriter, read_pool

    # Given a pool written in arbitrary order
    writer = PoolWriter()
    for index in range(50):
        record_id = f"r{index:02d}"
        line = (json.dumps({"text": f"é {index}"}, ensure_ascii=False) + "\n").encode()
        writer.add((index * 37 % 50) / 50, record_id, line, earlier=False)
    pool = writer.upload(platform.curated_bucket, "datasets/v/lineage/pool.jsonl")
    size = aws.s3().head_object(Bucket=platform.curated_bucket, Key=pool.key)["ContentLength"]

    # When it is read with ranges that split lines, split a character, or end the file exactly
    for range_bytes in (7, 61, size, size // 2, 1 << 20):
        monkeypatch.setattr(dataset_lineage, "RANGE_BYTES", range_bytes)
        entries = list(read_pool(platform.curated_bucket, pool.key))

        # Then every record comes back once, lowest rank first
        assert len(entries) == pool.count == 50, range_bytes
        assert [e.rank for e in entries] == sorted(e.rank for e in entries)
        assert {e.record_id for e in entries} == {f"r{i:02d}" for i in range(50)}
