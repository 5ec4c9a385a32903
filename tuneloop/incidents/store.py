"""The Incidents table: open, add to, list, acknowledge and resolve incidents.

Writes are single UpdateItems that create the item when it is missing, so the Incidents
function (which opens an incident with its context) and the Rollback function (which adds
what it did) may record the same alarm in either order. Opening is conditional: a retried
delivery of the same alarm adds nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.incidents.record import ACKNOWLEDGED, OPEN, RESOLVED, Incident, TimelineEvent
from tuneloop.month_index import LISTED_MONTHS, month_of, newest_first
from tuneloop.operations.views_common import dynamodb_value, plain

MONTH_ATTRIBUTE = "opened_month"


class IncidentError(RuntimeError):
    """An incident does not exist, or cannot change the way asked (the message says why)."""


def _created_fields(opened_at: str) -> tuple[str, dict[str, Any]]:
    """SET clauses that only the first writer's values fill in."""
    return (
        "opened_at = if_not_exists(opened_at, :opened_at), "
        "opened_month = if_not_exists(opened_month, :opened_month), "
        "#status = if_not_exists(#status, :open), "
        "timeline = list_append(if_not_exists(timeline, :none), :events)",
        {
            ":opened_at": opened_at,
            ":opened_month": month_of(opened_at),
            ":open": OPEN,
            ":none": [],
        },
    )


def open_incident(
    table: str, incident_id: str, *, opened_at: str, fields: Mapping[str, Any]
) -> bool:
    """Record the alarm's context on the incident; False if it was recorded already."""
    created, values = _created_fields(opened_at)
    names = {"#status": "status"}
    sets = [created, "alarm_recorded = :recorded"]
    values[":recorded"] = True
    for index, (name, value) in enumerate(sorted(fields.items())):
        names[f"#f{index}"] = name
        values[f":f{index}"] = dynamodb_value(value)
        sets.append(f"#f{index} = :f{index}")
    event = TimelineEvent(opened_at, "opened", f"{fields.get('alarm_name', 'alarm')} fired")
    values[":events"] = [event.to_dict()]
    try:
        aws.table(table).update_item(
            Key={"incident_id": incident_id},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_not_exists(alarm_recorded)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if _condition_failed(exc):
            return False
        raise
    return True


def add_event(
    table: str,
    incident_id: str,
    event: TimelineEvent,
    *,
    automatic_action: Mapping[str, Any] | None = None,
    alarm_name: str = "",
) -> None:
    """Append ``event`` (and an automatic action) to the incident, creating it if needed."""
    created, values = _created_fields(event.at)
    values[":events"] = [event.to_dict()]
    sets = [created]
    names = {"#status": "status"}
    if automatic_action is not None:
        sets.append(
            "automatic_actions = list_append(if_not_exists(automatic_actions, :none), :act)"
        )
        values[":act"] = [dynamodb_value(dict(automatic_action))]
    if alarm_name:
        sets.append("alarm_name = if_not_exists(alarm_name, :alarm)")
        values[":alarm"] = alarm_name
    aws.table(table).update_item(
        Key={"incident_id": incident_id},
        UpdateExpression="SET " + ", ".join(sets),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def get_incident(table: str, incident_id: str) -> Incident:
    item = aws.table(table).get_item(Key={"incident_id": incident_id}, ConsistentRead=True)
    if "Item" not in item:
        raise IncidentError(
            f"no incident {incident_id!r}; `tuneloop incidents list` shows the recent ones"
        )
    return Incident.from_item(plain(item["Item"]))


def list_incidents(
    table: str, *, limit: int = 50, statuses: Sequence[str] = (), months: int = LISTED_MONTHS
) -> list[Incident]:
    """Newest first, read through the ``by_month`` index (no Scan), one Query per month
    back to ``months`` until ``limit`` are found."""
    where = Attr("status").is_in(list(statuses)) if statuses else None
    items = newest_first(table, MONTH_ATTRIBUTE, limit=limit, where=where, months=months)
    return [Incident.from_item(plain(item)) for item in items]


def newest_unresolved(table: str, alarm_name: str) -> Incident | None:
    """The newest incident of ``alarm_name`` that is not resolved (an OK ends its episode)."""
    where = Attr("alarm_name").eq(alarm_name) & Attr("status").ne(RESOLVED)
    items = newest_first(table, MONTH_ATTRIBUTE, limit=1, where=where)
    return Incident.from_item(plain(items[0])) if items else None


def acknowledge(table: str, incident_id: str, *, by: str, at: str, note: str = "") -> Incident:
    """open → acknowledged: someone is on it."""
    text = f"acknowledged by {by}" + (f": {note}" if note else "")
    return _change_status(
        table,
        incident_id,
        to=ACKNOWLEDGED,
        from_statuses=(OPEN,),
        event=TimelineEvent(at, "acknowledged", text, by),
        fields={"acknowledged_by": by, "acknowledged_at": at},
    )


def resolve(table: str, incident_id: str, *, by: str, at: str, root_cause: str) -> Incident:
    """open | acknowledged → resolved, with the root cause kept on the incident."""
    if not root_cause.strip():
        raise IncidentError("resolving an incident needs a root-cause note (--root-cause)")
    return _change_status(
        table,
        incident_id,
        to=RESOLVED,
        from_statuses=(OPEN, ACKNOWLEDGED),
        event=TimelineEvent(at, "resolved", f"resolved by {by}: {root_cause.strip()}", by),
        fields={"resolved_by": by, "resolved_at": at, "root_cause": root_cause.strip()},
    )


def _change_status(
    table: str,
    incident_id: str,
    *,
    to: str,
    from_statuses: Sequence[str],
    event: TimelineEvent,
    fields: Mapping[str, str],
) -> Incident:
    names = {"#status": "status", **{f"#f{i}": name for i, name in enumerate(fields)}}
    values: dict[str, Any] = {
        ":to": to,
        ":events": [event.to_dict()],
        **{f":s{i}": status for i, status in enumerate(from_statuses)},
        **{f":f{i}": value for i, value in enumerate(fields.values())},
    }
    allowed = ", ".join(f":s{i}" for i in range(len(from_statuses)))
    sets = ["#status = :to", "timeline = list_append(timeline, :events)"]
    sets += [f"#f{i} = :f{i}" for i in range(len(fields))]
    try:
        response = aws.table(table).update_item(
            Key={"incident_id": incident_id},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=f"attribute_exists(incident_id) AND #status IN ({allowed})",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
    except ClientError as exc:
        if not _condition_failed(exc):
            raise
        current = get_incident(table, incident_id)  # raises when it does not exist
        raise IncidentError(
            f"incident {incident_id} is {current.status}; only an incident that is "
            f"{' or '.join(from_statuses)} can become {to}"
        ) from exc
    return Incident.from_item(plain(response["Attributes"]))


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
