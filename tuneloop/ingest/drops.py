"""The Drops table: one manifest item per drop, created processing, finished complete.

Finishing a drop (or a segment of one) and adding its counts to the retrain counters and to
the day's ingest counter happen in one transaction conditioned on ``status = processing``:
however often an event is delivered, the counters grow once per drop. A drop's manifest
carries ``started_month`` (segments don't), which keys the ``by_month`` index the console
and ``tuneloop data drops`` read the newest drops from without a Scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.ingest.events import DropObject
from tuneloop.month_index import month_of
from tuneloop.retrain import PENDING_RECORDS, RETRAIN_KEY

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

PROCESSING = "processing"
COMPLETE = "complete"
# Counts a segment item holds and the parent sums (docs/contracts.md, Drops).
SEGMENT_COUNTS = ("received", "stored", "duplicate", "near_duplicate", "quarantined")
DAY_COUNTER_PREFIX = "ingested#"
"""Control items ``ingested#<YYYY-MM-DD>``: the records counted that UTC day, by outcome."""

_serialize = TypeSerializer().serialize


def _now() -> str:
    return datetime.now(UTC).isoformat()


def day_counter_key(day: str) -> str:
    return f"{DAY_COUNTER_PREFIX}{day}"


def _day_counter_update(control_table: str, counts: dict[str, Any], now: str) -> dict[str, Any]:
    """The transaction step adding a drop's (or segment's) counts to its day's counter."""
    added = {name: int(counts.get(name) or 0) for name in SEGMENT_COUNTS}
    return {
        "Update": {
            "TableName": control_table,
            "Key": {"key": _serialize(day_counter_key(now[:10]))},
            "UpdateExpression": "ADD " + ", ".join(f"#{name} :{name}" for name in added),
            "ExpressionAttributeNames": {f"#{name}": name for name in added},
            "ExpressionAttributeValues": {f":{n}": _serialize(v) for n, v in added.items()},
        }
    }


def _pending_update(control_table: str, stored: int, counters: Sequence[str]) -> dict[str, Any]:
    """The transaction step adding ``stored`` to each of the retrain item's ``counters``."""
    names = {f"#p{index}": counter for index, counter in enumerate(counters)}
    return {
        "Update": {
            "TableName": control_table,
            "Key": {"key": _serialize(RETRAIN_KEY)},
            "UpdateExpression": "ADD " + ", ".join(f"{name} :stored" for name in names),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":stored": _serialize(stored)},
        }
    }


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DropsTable:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def table(self) -> Table:
        return aws.table(self.table_name)

    def get(self, drop_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"drop_id": drop_id}, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def start(self, drop_id: str, obj: DropObject) -> dict[str, Any] | None:
        """Create the manifest as ``processing``; return the existing item if there is one."""
        now = _now()
        try:
            self.table.put_item(
                Item={
                    "drop_id": drop_id,
                    "bucket": obj.bucket,
                    "key": obj.key,
                    "etag": obj.etag,
                    "dataset": obj.dataset,
                    "status": PROCESSING,
                    "started_at": now,
                    "started_month": month_of(now),  # on by_month (tuneloop/month_index.py)
                },
                ConditionExpression="attribute_not_exists(drop_id)",
            )
            return None
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
        return self.get(drop_id)

    def complete(
        self,
        drop_id: str,
        counts: dict[str, Any],
        *,
        control_table: str,
        stored: int,
        pending: Sequence[str] = (PENDING_RECORDS,),
    ) -> bool:
        """Mark the drop complete with its counts and add ``stored`` to the retrain counters
        ``pending`` (``tuneloop.retrain.pending_attribute``: the one, or its lines').

        Returns False when another delivery of the same event completed it first.
        """
        now = _now()
        names = {"#status": "status", **{f"#{name}": name for name in counts}}
        values = {
            ":processing": PROCESSING,
            ":complete": COMPLETE,
            ":completed_at": now,
            **{f":{name}": value for name, value in counts.items()},
        }
        assignments = ", ".join(f"#{name} = :{name}" for name in counts)
        actions: list[Any] = [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"drop_id": _serialize(drop_id)},
                    "UpdateExpression": (
                        f"SET #status = :complete, completed_at = :completed_at, {assignments}"
                    ),
                    "ConditionExpression": "#status = :processing",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {k: _serialize(v) for k, v in values.items()},
                }
            },
            _day_counter_update(control_table, counts, now),
        ]
        if stored and pending:
            actions.append(_pending_update(control_table, stored, pending))
        try:
            aws.dynamodb().transact_write_items(TransactItems=actions)
            return True
        except ClientError as exc:
            reasons: list[Any] = exc.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise


MAX_LISTED_NEAR_DUPLICATES = 100


class SegmentedDrops(DropsTable):
    """Segment items (``<drop_id>#<n>``, ``segment_of``) and the completion of their parent."""

    def plan(self, drop_id: str, messages: list[tuple[str, str]], obj: DropObject) -> None:
        """Create the segment items (kept if they exist), each with the queue message that
        processes it, and record their number on the parent."""
        for index, (segment, message) in enumerate(messages):
            try:
                self.table.put_item(
                    Item={
                        "drop_id": segment,
                        "segment_of": drop_id,
                        "segment": index,
                        "key": obj.key,
                        "dataset": obj.dataset,
                        "status": PROCESSING,
                        "message": message,
                        "started_at": _now(),
                    },
                    ConditionExpression="attribute_not_exists(drop_id)",
                )
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
        self.table.update_item(
            Key={"drop_id": drop_id},
            UpdateExpression="SET #segments = :count",
            ExpressionAttributeNames={"#segments": "segments"},
            ExpressionAttributeValues={":count": len(messages)},
        )

    def unfinished_messages(self, drop_id: str, count: int) -> list[str]:
        """The queue messages of the segments not complete yet (to send again)."""
        items = [self.get(f"{drop_id}#{index}") for index in range(count)]
        return [
            str(item["message"])
            for item in items
            if item is not None and item.get("status") != COMPLETE and "message" in item
        ]

    def complete_segment(
        self,
        segment: str,
        drop_id: str,
        counts: dict[str, Any],
        *,
        control_table: str,
        stored: int,
        pending: Sequence[str] = (PENDING_RECORDS,),
    ) -> bool:
        """Finish a segment, count it on the parent, add ``stored`` to the retrain counters
        ``pending`` and its counts to the day's, in one transaction; False when it was
        complete already."""
        now = _now()
        names = {"#status": "status", **{f"#{name}": name for name in counts}}
        values = {
            ":processing": PROCESSING,
            ":complete": COMPLETE,
            ":completed_at": now,
            **{f":{name}": value for name, value in counts.items()},
        }
        assignments = ", ".join(f"#{name} = :{name}" for name in counts)
        actions: list[Any] = [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"drop_id": _serialize(segment)},
                    "UpdateExpression": (
                        f"SET #status = :complete, completed_at = :completed_at, {assignments}"
                    ),
                    "ConditionExpression": "#status = :processing",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {k: _serialize(v) for k, v in values.items()},
                }
            },
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"drop_id": _serialize(drop_id)},
                    "UpdateExpression": "ADD segments_done :one",
                    "ExpressionAttributeValues": {":one": _serialize(1)},
                }
            },
            _day_counter_update(control_table, counts, now),
        ]
        if stored and pending:
            actions.append(_pending_update(control_table, stored, pending))
        try:
            aws.dynamodb().transact_write_items(TransactItems=actions)
            return True
        except ClientError as exc:
            reasons: list[Any] = exc.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise

    def finish_if_done(self, drop_id: str) -> dict[str, Any] | None:
        """Complete the parent with the summed counts of its segments once all are done.

        Returns the parent's item when it is complete (now or before), else None. Safe to
        call from every segment: the update is conditioned on ``status = processing``.
        """
        parent = self.get(drop_id)
        if parent is None:
            return None
        if parent.get("status") == COMPLETE:
            return parent
        count = int(parent.get("segments", 0))
        if not count or int(parent.get("segments_done", 0)) < count:
            return None
        items = [self.get(f"{drop_id}#{index}") or {} for index in range(count)]
        counts = summed_counts(items)
        names = {"#status": "status", **{f"#{name}": name for name in counts}}
        values = {
            ":processing": PROCESSING,
            ":complete": COMPLETE,
            ":completed_at": _now(),
            **{f":{name}": value for name, value in counts.items()},
        }
        assignments = ", ".join(f"#{name} = :{name}" for name in counts)
        try:
            self.table.update_item(
                Key={"drop_id": drop_id},
                UpdateExpression=(
                    f"SET #status = :complete, completed_at = :completed_at, {assignments}"
                ),
                ConditionExpression="#status = :processing",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
        return self.get(drop_id)


def summed_counts(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """The parent's counts: the segments' counts, reasons and redactions added up, the
    first near-duplicates listed, and the quarantine prefix when any record was quarantined."""
    totals: dict[str, Any] = {name: 0 for name in SEGMENT_COUNTS}
    reasons: dict[str, int] = {}
    redactions: dict[str, int] = {}
    near: list[Any] = []
    quarantine_uris: list[str] = []
    for item in segments:
        for name in SEGMENT_COUNTS:
            totals[name] += int(item.get(name, 0))
        for target, source in ((reasons, "reasons"), (redactions, "redactions")):
            for key, value in dict(item.get(source, {})).items():
                target[key] = target.get(key, 0) + int(value)
        near.extend(list(item.get("near_duplicates", [])))
        if item.get("quarantine_uri"):
            quarantine_uris.append(str(item["quarantine_uri"]))
    prefix = quarantine_uris[0].rsplit("/", 1)[0] + "/" if quarantine_uris else ""
    return {
        **totals,
        "reasons": reasons,
        "redactions": redactions,
        "near_duplicates": near[:MAX_LISTED_NEAR_DUPLICATES],
        "quarantine_uri": prefix,
    }
