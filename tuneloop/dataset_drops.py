"""The drops a run's data set takes in, and their records, without reading the Records table.

Complete drops are listed through the Drops table's ``by_month`` index (a Query per month,
newest month first, back to the month before the champion's watermark); each one's stored
records are read from its curated copy, ``curated/<dataset>/<drop_id>/part-*.jsonl``
(``tuneloop.ingest.curated``), which Ingest writes before it marks the drop complete. A
drop still processing (or one whose records were all quarantined, which has no copy)
adds nothing; a drop that completes later is taken by the next run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from tuneloop import aws
from tuneloop.ingest.curated import CURATED_PREFIX
from tuneloop.month_index import MONTH_INDEX, month_before, month_of

FIRST_RUN_MONTHS = 120
"""How far back a first model looks for drops (a month with none costs one empty Query)."""
LONGEST_DROP = timedelta(days=7)
"""A drop completes within this of its start; older starts are not read again."""


@dataclass(frozen=True)
class CompletedDrop:
    drop_id: str
    dataset: str
    completed_at: str


def completed_drops(
    table_name: str,
    *,
    after: str,
    until: str,
    skip: frozenset[str] = frozenset(),
    datasets: frozenset[str] | None = None,
) -> list[CompletedDrop]:
    """Drops completed in ``(after, until]`` (all up to ``until`` when ``after`` is ""),
    except ``skip``, oldest first; only those of ``datasets`` when given (a model line's)."""
    table = aws.table(table_name)
    # A drop is indexed by the month it started, at most LONGEST_DROP before it completed:
    # the Query's key condition skips the drops of the history, not only its filter.
    started = (datetime.fromisoformat(after) - LONGEST_DROP).isoformat() if after else ""
    oldest = month_of(started) if after else ""
    month = month_of(until)
    where = Attr("status").eq("complete") & Attr("completed_at").lte(until)
    if after:
        where = where & Attr("completed_at").gt(after)
    found: list[CompletedDrop] = []
    for _ in range(FIRST_RUN_MONTHS):
        in_month = Key("started_month").eq(month)
        request: dict[str, Any] = {
            "IndexName": MONTH_INDEX,
            "KeyConditionExpression": in_month & Key("started_at").gte(started)
            if started
            else in_month,
            "FilterExpression": where,
            "ProjectionExpression": "drop_id, dataset, completed_at",
        }
        while True:
            page = table.query(**request)
            for item in page.get("Items", []):
                drop = CompletedDrop(
                    str(item["drop_id"]),
                    str(item.get("dataset", "default")),
                    str(item["completed_at"]),
                )
                if drop.drop_id not in skip and (datasets is None or drop.dataset in datasets):
                    found.append(drop)
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if month == oldest:
            break
        month = month_before(month)
    return sorted(found, key=lambda drop: (drop.completed_at, drop.drop_id))


@dataclass(frozen=True)
class CuratedRecord:
    record_id: str
    dataset: str
    line: bytes  # the training line, as PrepareDataset writes it


def curated_records(bucket: str, drop: CompletedDrop) -> Iterator[CuratedRecord]:
    """The records ``drop`` stored, part by part, from its curated copy."""
    s3 = aws.s3()
    prefix = f"{CURATED_PREFIX}{drop.dataset}/{drop.drop_id}/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
            for raw in body.iter_lines():
                if not raw:
                    continue
                value = json.loads(raw)
                training = (
                    {"messages": value["messages"]}
                    if "messages" in value
                    else {"text": str(value["text"])}
                )
                line = json.dumps(training, ensure_ascii=False) + "\n"
                yield CuratedRecord(str(value["record_id"]), drop.dataset, line.encode("utf-8"))
