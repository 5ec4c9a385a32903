"""Stored records as Ingest leaves them: the Records item, the drop's curated copy and the
drop's manifest, so both ways PrepareDataset reads (scan, incremental) see the same data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.integration.aws_fixtures import Platform
from tuneloop import aws
from tuneloop.ingest.curated import curated_key


def put_drop(
    platform: Platform,
    drop_id: str,
    dataset: str,
    records: dict[str, dict[str, Any]],
    *,
    status: str = "complete",
    curated: bool = True,
    ingested_at: str = "",
) -> None:
    """A drop that stored ``records`` (record id -> ``{"text"}`` or ``{"messages"}``)."""
    now = ingested_at or datetime.now(UTC).isoformat()
    table = aws.table(platform.records_table)
    lines: list[str] = []
    for number, (record_id, content) in enumerate(records.items(), start=1):
        stored = {"messages": json.dumps(content["messages"])} if "messages" in content else content
        table.put_item(
            Item={
                "record_id": record_id,
                "dataset": dataset,
                "drop_id": drop_id,
                "source_key": f"drops/{dataset}/{drop_id}.jsonl",
                "line": number,
                "ingested_at": now,
                **stored,
            }
        )
        lines.append(json.dumps({"record_id": record_id, "line": number, **content}))
    if curated and lines:
        aws.s3().put_object(
            Bucket=platform.curated_bucket,
            Key=curated_key(dataset, drop_id),
            Body=("\n".join(lines) + "\n").encode("utf-8"),
        )
    item: dict[str, Any] = {
        "drop_id": drop_id,
        "dataset": dataset,
        "status": status,
        "started_at": now,
        "started_month": now[:7],
        "stored": len(records),
    }
    if status == "complete":
        item["completed_at"] = datetime.now(UTC).isoformat()
    aws.table(platform.drops_table).put_item(Item=item)


def add_record(platform: Platform, record_id: str, dataset: str, content: dict[str, Any]) -> None:
    """One more record in the drop ``d-<dataset>`` (its curated copy rewritten with it)."""
    drop_id = f"d-{dataset}"
    key = curated_key(dataset, drop_id)
    s3 = aws.s3()
    try:
        earlier = s3.get_object(Bucket=platform.curated_bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        earlier = b""
    put_drop(platform, drop_id, dataset, {record_id: content}, curated=False)
    line = json.dumps({"record_id": record_id, "line": 1, **content}) + "\n"
    s3.put_object(Bucket=platform.curated_bucket, Key=key, Body=earlier + line.encode("utf-8"))
