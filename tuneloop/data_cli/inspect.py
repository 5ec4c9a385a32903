"""Read drop manifests from the Drops table and quarantined lines from the raw bucket."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase

from tuneloop import aws
from tuneloop.month_index import LISTED_MONTHS, newest_first

MIN_PREFIX = 8
_HEX = re.compile(r"^[0-9a-f]+$")


class DropLookupError(LookupError):
    """No drop, or more than one, answers to what the user typed."""


def _scan(table_name: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    table = aws.table(table_name)
    while True:
        page = table.scan(**kwargs)
        yield from (dict(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _newest_first(item: dict[str, Any]) -> str:
    return str(item.get("started_at") or item.get("completed_at") or "")


def list_drops(
    table_name: str,
    *,
    dataset: str | None = None,
    limit: int = 20,
    months: int = LISTED_MONTHS,
    now: datetime | None = None,
) -> list[dict]:
    """Drop manifests, newest first, from Drops' ``by_month`` index (segments are not on it):
    this month's, then the month before, back ``months`` months; no Scan."""
    where = Attr("dataset").eq(dataset) if dataset is not None else None
    return newest_first(
        table_name, "started_month", limit=limit, where=where, months=months, now=now
    )


def find_drop(table_name: str, reference: str) -> dict[str, Any]:
    """One drop manifest by id, unique id prefix (8+ characters) or S3 key / URI."""
    reference = reference.strip()
    if reference.startswith("s3://") or "/" in reference:
        return _by_key(table_name, reference)
    drop_id = reference.lower()
    if not _HEX.match(drop_id):
        raise DropLookupError(
            f"{reference!r} is neither a drop id (hex) nor an S3 key (drops/<dataset>/...)"
        )
    if len(drop_id) < MIN_PREFIX:
        raise DropLookupError(
            f"drop id prefix {reference!r} is too short: give at least {MIN_PREFIX} characters"
        )
    if len(drop_id) == 64:
        item = aws.table(table_name).get_item(Key={"drop_id": drop_id}).get("Item")
        if item is None:
            raise DropLookupError(f"no drop {drop_id} in {table_name}")
        return dict(item)
    matches = list(
        _scan(
            table_name,
            FilterExpression=Attr("drop_id").begins_with(drop_id) & Attr("segment_of").not_exists(),
        )
    )
    if not matches:
        raise DropLookupError(f"no drop id starts with {drop_id!r} in {table_name}")
    if len(matches) > 1:
        ids = ", ".join(sorted(str(item["drop_id"])[:16] for item in matches)[:5])
        raise DropLookupError(
            f"drop id prefix {drop_id!r} is ambiguous: {len(matches)} drops match ({ids}); "
            "give more characters"
        )
    return matches[0]


def _by_key(table_name: str, reference: str) -> dict[str, Any]:
    bucket = None
    key = reference
    if reference.startswith("s3://"):
        bucket, _, key = reference[len("s3://") :].partition("/")
    condition: ConditionBase = Attr("key").eq(key) & Attr("segment_of").not_exists()
    if bucket:
        condition = condition & Attr("bucket").eq(bucket)
    matches = sorted(_scan(table_name, FilterExpression=condition), key=_newest_first)
    if not matches:
        raise DropLookupError(f"no drop for {reference} in {table_name} (not ingested yet?)")
    # The same key uploaded again is a new drop (new ETag): the newest is the one wanted.
    return matches[-1]


def quarantine_sample(uri: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` lines of a quarantine file (already redacted by the ingestion)."""
    if count <= 0 or not uri.startswith("s3://"):
        return []
    bucket, _, key = uri[len("s3://") :].partition("/")
    body = aws.s3().get_object(Bucket=bucket, Key=key)["Body"]
    sample: list[dict[str, Any]] = []
    # Streamed: a quarantine file can be as large as its drop.
    for raw in body.iter_lines():
        if not raw.strip():
            continue
        sample.append(json.loads(raw))
        if len(sample) == count:
            break
    body.close()
    return sample
