"""The Drops table: one manifest item per drop, created processing, finished complete.

Finishing a drop and adding its stored count to the retrain counter happen in one
transaction conditioned on ``status = processing``: however often an event is delivered,
the counter grows once per drop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.ingest.events import DropObject

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

PROCESSING = "processing"
COMPLETE = "complete"
RETRAIN_KEY = "retrain"

_serialize = TypeSerializer().serialize


def _now() -> str:
    return datetime.now(UTC).isoformat()


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
        try:
            self.table.put_item(
                Item={
                    "drop_id": drop_id,
                    "bucket": obj.bucket,
                    "key": obj.key,
                    "etag": obj.etag,
                    "dataset": obj.dataset,
                    "status": PROCESSING,
                    "started_at": _now(),
                },
                ConditionExpression="attribute_not_exists(drop_id)",
            )
            return None
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
        return self.get(drop_id)

    def complete(
        self, drop_id: str, counts: dict[str, Any], *, control_table: str, stored: int
    ) -> bool:
        """Mark the drop complete with its counts and add ``stored`` to the retrain counter.

        Returns False when another delivery of the same event completed it first.
        """
        names = {"#status": "status", **{f"#{name}": name for name in counts}}
        values = {
            ":processing": PROCESSING,
            ":complete": COMPLETE,
            ":completed_at": _now(),
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
            }
        ]
        if stored:
            actions.append(
                {
                    "Update": {
                        "TableName": control_table,
                        "Key": {"key": _serialize(RETRAIN_KEY)},
                        "UpdateExpression": "ADD pending_records :stored",
                        "ExpressionAttributeValues": {":stored": _serialize(stored)},
                    }
                }
            )
        try:
            aws.dynamodb().transact_write_items(TransactItems=actions)
            return True
        except ClientError as exc:
            reasons: list[Any] = exc.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
