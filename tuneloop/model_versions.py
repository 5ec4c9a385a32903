"""The ModelVersions table: one item per run, its status and its lineage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws

TRAINING = "training"
REJECTED = "rejected"
REGISTERED = "registered"
DEPLOYING = "deploying"
DEPLOYED = "deployed"
PRODUCTION = "production"
ROLLED_BACK = "rolled_back"
FAILED = "failed"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def get_version(table_name: str, model_version: str) -> dict[str, Any] | None:
    item = (
        aws.table(table_name)
        .get_item(Key={"model_version": model_version}, ConsistentRead=True)
        .get("Item")
    )
    return dict(item) if item else None


def update_version(
    table_name: str,
    model_version: str,
    fields: dict[str, Any],
    *,
    only_if_status: str | None = None,
) -> bool:
    """Set ``fields`` (and ``updated_at``) on the item, creating it if needed.

    With ``only_if_status`` the update applies only while the item has that status;
    returns False when it did not.
    """
    values = {**fields, "updated_at": now_iso()}
    names = {f"#f{index}": name for index, name in enumerate(values)}
    expression_values = {f":v{index}": value for index, value in enumerate(values.values())}
    assignments = ", ".join(f"#f{index} = :v{index}" for index in range(len(values)))
    extra: dict[str, Any] = {}
    if only_if_status is not None:
        names["#status"] = "status"
        expression_values[":expected_status"] = only_if_status
        extra["ConditionExpression"] = "#status = :expected_status"
    try:
        aws.table(table_name).update_item(
            Key={"model_version": model_version},
            UpdateExpression=f"SET {assignments}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=expression_values,
            **extra,
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True
