"""The audit trail: one append-only record per change to the platform.

Every action of :mod:`tuneloop.operations.actions` (console and CLI) and the pipeline's own
automatic deployments and rollbacks append one record: who (a signed-in user, or the IAM
principal from ``sts:GetCallerIdentity``), what, the target, before and after, when, the
request id. The table (Storage stack, output ``AuditTableName``) has partition key ``month``
("YYYY-MM") and sort key ``event_id`` ("<ISO-8601 UTC timestamp>#<request id>").

A record is written with ``attribute_not_exists``: an append never replaces an earlier
record. No application role may update or delete items of the table (the grants are PutItem,
Query and GetItem only; tests/infra checks it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError

from tuneloop import aws

ACTIONS = (
    "deploy",
    "rollback",
    "freeze",
    "unfreeze",
    "benchmark_created",
    "benchmark_run_started",
    "gate_policy_changed",
    "run_started",
    "run_stopped",
    "auto_deploy",
    "auto_rollback",
    "incident_acknowledged",
    "incident_resolved",
)
ACTOR_KINDS = ("user", "iam")
SOURCES = ("console", "cli", "pipeline")
# How far back list_records looks when no record fills the limit first.
DEFAULT_MONTHS = 12


class AuditError(RuntimeError):
    """A record could not be appended (its event id exists, or its fields are invalid)."""


@dataclass(frozen=True)
class Actor:
    """Who does something: ``name`` is "alice (operator)" for a console user, or an IAM
    principal's ARN; ``kind`` "user" | "iam"; ``source`` "console" | "cli" | "pipeline"."""

    name: str
    kind: str
    source: str

    def __post_init__(self) -> None:
        if not self.name:
            raise AuditError("an actor needs a name")
        if self.kind not in ACTOR_KINDS:
            raise AuditError(f"actor kind {self.kind!r} is not one of {', '.join(ACTOR_KINDS)}")
        if self.source not in SOURCES:
            raise AuditError(f"actor source {self.source!r} is not one of {', '.join(SOURCES)}")

    @classmethod
    def from_iam(cls, source: str) -> Actor:
        """The caller's IAM principal (``sts:GetCallerIdentity``; needs no permission)."""
        arn = str(aws.client("sts").get_caller_identity()["Arn"])
        return cls(name=arn, kind="iam", source=source)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class AuditRecord:
    month: str
    event_id: str
    actor: str
    actor_kind: str
    action: str
    target: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    at: str = ""
    request_id: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> AuditRecord:
        data = _plain(dict(item))
        return cls(
            month=str(data.get("month", "")),
            event_id=str(data.get("event_id", "")),
            actor=str(data.get("actor", "")),
            actor_kind=str(data.get("actor_kind", "")),
            action=str(data.get("action", "")),
            target=str(data.get("target", "")),
            before=dict(data.get("before") or {}),
            after=dict(data.get("after") or {}),
            at=str(data.get("at", "")),
            request_id=str(data.get("request_id", "")),
            source=str(data.get("source", "")),
        )


def append(
    table: str,
    actor: Actor,
    action: str,
    target: str,
    *,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    request_id: str | None = None,
    at: str | None = None,
) -> AuditRecord:
    """Append one record; never overwrites one (``attribute_not_exists``).

    ``at`` defaults to now (UTC); it is a parameter so that a caller replaying a known event
    (and the tests) can state it. Raises :class:`AuditError` if the event id exists."""
    if action not in ACTIONS:
        raise AuditError(f"audit action {action!r} is not one of {', '.join(ACTIONS)}")
    if not target:
        raise AuditError("an audit record needs a target")
    moment = at or datetime.now(UTC).isoformat(timespec="microseconds")
    request = request_id or uuid.uuid4().hex
    record = AuditRecord(
        month=moment[:7],
        event_id=f"{moment}#{request}",
        actor=actor.name,
        actor_kind=actor.kind,
        action=action,
        target=target,
        before=_plain(dict(before)),
        after=_plain(dict(after)),
        at=moment,
        request_id=request,
        source=actor.source,
    )
    try:
        aws.table(table).put_item(
            Item=_to_dynamodb(asdict(record)),
            ConditionExpression="attribute_not_exists(#month) AND attribute_not_exists(#event)",
            ExpressionAttributeNames={"#month": "month", "#event": "event_id"},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise AuditError(
                f"audit record {record.event_id} already exists; it was not overwritten"
            ) from exc
        raise
    return record


def list_records(
    table: str,
    *,
    who: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 200,
    months: int = DEFAULT_MONTHS,
    now: datetime | None = None,
) -> list[AuditRecord]:
    """Records newest first, at most ``limit``, from this month back ``months`` months.

    ``who`` matches a substring of the actor ("alice" finds "alice (operator)"), ``action``
    exactly, ``target`` a substring. One Query per month, newest month first, stopping as soon
    as ``limit`` records are found."""
    if limit <= 0:
        return []
    condition: ConditionBase | None = None
    for part in (
        Attr("actor").contains(who) if who else None,
        Attr("action").eq(action) if action else None,
        Attr("target").contains(target) if target else None,
    ):
        if part is not None:
            condition = part if condition is None else condition & part
    dynamo = aws.table(table)
    found: list[AuditRecord] = []
    for month in _months_back(now or datetime.now(UTC), months):
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("month").eq(month),
            "ScanIndexForward": False,
        }
        if condition is not None:
            kwargs["FilterExpression"] = condition
        while True:
            page = dynamo.query(**kwargs)
            for item in page.get("Items", []):
                found.append(AuditRecord.from_item(item))
                if len(found) >= limit:
                    return found
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return found


def _months_back(now: datetime, count: int) -> list[str]:
    year, month = now.year, now.month
    out = []
    for _ in range(max(count, 1)):
        out.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return out


def _to_dynamodb(value: Any) -> Any:
    # DynamoDB takes no floats: numbers go through Decimal, everything else as JSON does.
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value
