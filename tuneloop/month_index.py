"""Newest-first reads of a table through a month-partitioned index, with no Scan.

Drops (``by_month``: ``started_month`` + ``started_at``) and ModelVersions (``by_month``:
``created_month`` + ``created_at``) carry the ``YYYY-MM`` of their creation as the index's
partition key. Reading this month's partition newest first, then the month before, until
``limit`` items are found makes a list page cost what it shows, not every item ever written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import ConditionBase, Key

from tuneloop import aws

MONTH_INDEX = "by_month"
LISTED_MONTHS = 24
"""How far back a newest-first list looks (a direct lookup by key finds older items)."""


def month_of(timestamp: str) -> str:
    """``YYYY-MM`` of an ISO-8601 timestamp: the index's partition key."""
    return timestamp[:7]


def month_before(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def newest_first(
    table_name: str,
    month_attribute: str,
    *,
    limit: int,
    where: ConditionBase | None = None,
    months: int = LISTED_MONTHS,
    now: datetime | None = None,
    **query: Any,
) -> list[dict[str, Any]]:
    """Up to ``limit`` items, newest first, of the last ``months`` months (``where`` filters
    them; ``query`` adds e.g. a ProjectionExpression)."""
    table = aws.table(table_name)
    month = month_of((now or datetime.now(UTC)).isoformat())
    found: list[dict[str, Any]] = []
    for _ in range(months):
        request: dict[str, Any] = {
            **query,
            "IndexName": MONTH_INDEX,
            "KeyConditionExpression": Key(month_attribute).eq(month),
            "ScanIndexForward": False,
        }
        if where is not None:
            request["FilterExpression"] = where
        while len(found) < limit:
            if where is None:  # with a filter, Limit would cap the items read, not kept
                request["Limit"] = limit - len(found)
            page = table.query(**request)
            found.extend(dict(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if len(found) >= limit:
            break
        month = month_before(month)
    return found[:limit]


def backfill(
    table_name: str,
    key: str,
    month_attribute: str,
    at_attribute: str,
    *,
    skip_attribute: str = "",
) -> int:
    """Give every item written before the index existed its month (``at_attribute``'s);
    items with ``skip_attribute`` (Drops' segments) stay off the index. Returns how many
    items were updated; running it again updates none (one Scan, reads only the keys)."""
    from boto3.dynamodb.conditions import Attr

    table = aws.table(table_name)
    where = Attr(month_attribute).not_exists() & Attr(at_attribute).exists()
    if skip_attribute:
        where = where & Attr(skip_attribute).not_exists()
    request: dict[str, Any] = {
        "FilterExpression": where,
        "ProjectionExpression": "#key, #at",
        "ExpressionAttributeNames": {"#key": key, "#at": at_attribute},
    }
    updated = 0
    while True:
        page = table.scan(**request)
        for item in page.get("Items", []):
            try:
                table.update_item(
                    Key={key: item[key]},
                    UpdateExpression="SET #month = :month",
                    ConditionExpression="attribute_not_exists(#month)",
                    ExpressionAttributeNames={"#month": month_attribute},
                    ExpressionAttributeValues={":month": month_of(str(item[at_attribute]))},
                )
                updated += 1
            except table.meta.client.exceptions.ConditionalCheckFailedException:
                pass  # written meanwhile, with its month
        if "LastEvaluatedKey" not in page:
            return updated
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
