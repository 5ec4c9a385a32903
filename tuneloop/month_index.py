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
