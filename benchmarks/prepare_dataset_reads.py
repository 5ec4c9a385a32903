"""PrepareDataset reads per retrain: the full Records scan (baseline) against the
incremental read (drops since the champion + its lineage), 1,000 new records on top of a
stored history of 10k, 100k and 1M records, in one process on moto.

Counted through botocore events (``tuneloop.aws_reads``): DynamoDB items read (Scan and
Query count every item they read, kept or filtered) and response bytes, S3 bytes read.

- 10k: real on both paths. The history is ten 1,000-record drops (Records items, curated
  copies, Drops items started 40 days ago); the champion is a real first run over them.
- 100k and 1M: the incremental path is real against a champion lineage of that size built
  with the same writers (``PoolWriter``, ``write_heldout``) and N/1,000 history drops in the
  Drops table; the Records table is not filled, and the scan's figures are simulated from
  the store's page counts: a Scan reads every item, so N + 1,000 items and the 10k run's
  bytes per item.

    .venv/bin/python benchmarks/prepare_dataset_reads.py
    .venv/bin/python benchmarks/prepare_dataset_reads.py --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NEW = 1000
SPLIT_ARGS = {"heldout_fraction": 0.05, "heldout_max_records": 500, "replay_ratio": 0.5}


def _env() -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    os.environ.pop("AWS_ENDPOINT_URL", None)


def _text(record_id: str) -> str:
    return f"{record_id}: how do I reset my password on the support portal? " + "x" * 40


def _put_drop(
    platform: Any,
    drop_id: str,
    ids: list[str],
    started: datetime,
    *,
    records: bool,
    took: timedelta = timedelta(minutes=1),
) -> None:
    from tuneloop import aws
    from tuneloop.ingest.curated import curated_key

    at = started.isoformat()
    if records:
        with aws.table(platform.records_table).batch_writer() as batch:
            for line, record_id in enumerate(ids, start=1):
                batch.put_item(
                    Item={
                        "record_id": record_id,
                        "dataset": "support",
                        "drop_id": drop_id,
                        "source_key": f"drops/support/{drop_id}.jsonl",
                        "line": line,
                        "ingested_at": at,
                        "text": _text(record_id),
                    }
                )
        body = "".join(
            json.dumps({"record_id": r, "line": n, "text": _text(r)}) + "\n"
            for n, r in enumerate(ids, start=1)
        )
        aws.s3().put_object(
            Bucket=platform.curated_bucket,
            Key=curated_key("support", drop_id),
            Body=body.encode("utf-8"),
        )
    aws.table(platform.drops_table).put_item(
        Item={
            "drop_id": drop_id,
            "dataset": "support",
            "status": "complete",
            "started_at": at,
            "started_month": at[:7],
            "completed_at": (started + took).isoformat(),
            "stored": len(ids),
        }
    )


def _simulated_champion(platform: Any, stored: int, prepared: datetime) -> None:
    """A champion lineage over ``stored`` records, written with the run's own writers."""
    from tuneloop import aws
    from tuneloop.dataset_lineage import Lineage, PoolWriter, Ranked, lineage_key, write_heldout
    from tuneloop.datasets import heldout_rank, replay_rank

    prefix = "datasets/v0001/"
    pool = PoolWriter()
    candidates: list[Ranked] = []
    for index in range(stored):
        record_id = f"h{index:07d}"
        line = (json.dumps({"text": _text(record_id)}) + "\n").encode("utf-8")
        rank = heldout_rank(record_id)
        if rank < SPLIT_ARGS["heldout_fraction"]:
            candidates.append(Ranked(rank, record_id, "support", line))
        else:
            pool.add(replay_rank(record_id), record_id, line, earlier=False)
    candidates.sort()
    cap = int(SPLIT_ARGS["heldout_max_records"])
    for entry in candidates[cap:]:
        pool.add(replay_rank(entry.record_id), entry.record_id, entry.line, earlier=False)
    write_heldout(platform.curated_bucket, prefix, candidates[:cap])
    pool_file = pool.upload(platform.curated_bucket, lineage_key(prefix, "pool.jsonl"))
    aws.s3().put_object(
        Bucket=platform.curated_bucket,
        Key=lineage_key(prefix, "lineage.json"),
        Body=Lineage(watermark=prepared.isoformat(), pools=(pool_file,)).to_json(),
    )
    aws.table(platform.model_versions_table).put_item(
        Item={
            "model_version": "v0001",
            "created_at": prepared.isoformat(),
            "dataset_s3_uri": f"s3://{platform.curated_bucket}/{prefix}",
        }
    )
    for drop in range(stored // NEW):  # the history's drop items, in earlier months
        _put_drop(platform, f"h{drop:05d}", [], prepared - timedelta(days=40), records=False)


def _measure(stored: int, real_scan: bool) -> dict[str, Any]:
    from moto import mock_aws

    from tests.integration.aws_fixtures import create_platform
    from tuneloop import aws
    from tuneloop.aws_reads import counting
    from tuneloop.datasets import DatasetLocations, SplitSettings, prepare_dataset

    with mock_aws():
        aws.reset()
        platform = create_platform()
        where = DatasetLocations(
            records_table=platform.records_table,
            drops_table=platform.drops_table,
            control_table=platform.control_table,
            curated_bucket=platform.curated_bucket,
            artifacts_bucket=platform.artifacts_bucket,
            model_versions_table=platform.model_versions_table,
        )
        split = SplitSettings(**SPLIT_ARGS)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        if real_scan:
            for drop in range(stored // NEW):
                ids = [f"h{drop:05d}-{i:04d}" for i in range(NEW)]
                _put_drop(platform, f"h{drop:05d}", ids, now - timedelta(days=40), records=True)
            prepare_dataset(execution_name="v0001", execution_arn="", where=where, split=split)
        else:
            _simulated_champion(platform, stored, now - timedelta(hours=1))
        aws.table(platform.control_table).put_item(
            Item={
                "key": "production",
                "model_version": "v0001",
                "endpoint_config_name": "c",
                "model_data_url": "s3://a/model.tar.gz",
            }
        )
        time.sleep(0.01)  # the new drop comes after the champion's watermark
        new_ids = [f"n{i:05d}" for i in range(NEW)]
        _put_drop(platform, "new", new_ids, datetime.now(UTC), records=True, took=timedelta())
        row: dict[str, Any] = {"stored": stored}
        runs = (("incremental", "v0002"), ("scan", "v0002-scan"))
        for read, name in runs if real_scan else runs[:1]:
            with counting() as reads:
                result = prepare_dataset(
                    execution_name=name, execution_arn="", where=where, split=split, read=read
                )
            row[read] = {
                "items": sum(reads.items.values()),
                "records_items": reads.items[platform.records_table],
                "bytes": sum(reads.s3_bytes.values()) + sum(reads.dynamodb_bytes.values()),
                "new": result["record_count"],
                "replay": result["replay_count"],
            }
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    _env()
    sizes = [int(size) for size in args.sizes.split(",")]
    rows = [_measure(size, real_scan=index == 0) for index, size in enumerate(sizes)]
    scan_bytes_per_item = rows[0]["scan"]["bytes"] / rows[0]["scan"]["items"]
    print(f"{NEW} new records per retrain; heldout cap 500, replay ratio 0.5")
    print(
        f"{'stored':>9} {'scan items':>11} {'scan MB':>9} {'incr items':>11} {'incr MB':>9} "
        f"{'items ratio':>12} {'bytes ratio':>12}  scan figures"
    )
    for row in rows:
        if "scan" not in row:  # simulated: a Scan reads every item
            items = row["stored"] + NEW
            row["scan"] = {"items": items, "bytes": items * scan_bytes_per_item, "sim": True}
        scan, incr = row["scan"], row["incremental"]
        print(
            f"{row['stored']:>9,} {scan['items']:>11,} {scan['bytes'] / 1e6:>9.2f} "
            f"{incr['items']:>11,} {incr['bytes'] / 1e6:>9.2f} "
            f"{scan['items'] / max(incr['items'], 1):>12.1f} "
            f"{scan['bytes'] / incr['bytes']:>12.1f}  "
            f"{'simulated' if scan.get('sim') else 'measured'}; incremental Records items "
            f"{incr['records_items']}, new {incr['new']}, replay {incr['replay']}"
        )


if __name__ == "__main__":
    main()
