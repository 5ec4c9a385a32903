"""The ModelVersions table: one item per run, its status and its lineage.

This module owns the table. A version's status changes only through the named transitions
below; each is one conditional write that states which statuses it may leave from, so a
stale or out-of-order step fails loudly instead of overwriting a later state::

    (none) ──start_training──▶ training ──reject──▶ rejected
                                   │ register
                                   ▼
    failed ◀──fail── (any but production)      registered ──start_deploying──▶ deploying
                                                                                   │ promote
    deployed ◀──supersede── production ◀───────────────────────────────────────────┘
        │                      │  ▲
        └───start_deploying    │  └──restore (rolled_back / deployed → production)
                               ▼
                          rolled_back ──start_deploying (a chosen version, redeployed)

Repeating a transition that already happened (a retried Lambda) is a no-op that succeeds.

With model lines, a version's ``model_line`` (set by PrepareDataset and again by Register)
names the line it was trained for; a version without one is the endpoint's one model.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.month_index import month_of

TRAINING = "training"
REJECTED = "rejected"
REGISTERED = "registered"
DEPLOYING = "deploying"
DEPLOYED = "deployed"
PRODUCTION = "production"
ROLLED_BACK = "rolled_back"
FAILED = "failed"
STATUSES = (TRAINING, REJECTED, REGISTERED, DEPLOYING, DEPLOYED, PRODUCTION, ROLLED_BACK, FAILED)

# Statuses a version may be in when it (re)enters a deployment: a registered candidate, or an
# earlier version an operator deploys again (rollback to a chosen version).
DEPLOYABLE = (REGISTERED, DEPLOYED, ROLLED_BACK, DEPLOYING, PRODUCTION)


class VersionTransitionError(RuntimeError):
    """The version is not in a status the transition may leave from; nothing was written."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def get_version(table_name: str, model_version: str) -> dict[str, Any] | None:
    item = (
        aws.table(table_name)
        .get_item(Key={"model_version": model_version}, ConsistentRead=True)
        .get("Item")
    )
    return dict(item) if item else None


def scan_versions(table_name: str) -> Iterator[dict[str, Any]]:
    """Every version item, page by page."""
    table = aws.table(table_name)
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        for item in page.get("Items", []):
            yield dict(item)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# -- transitions --------------------------------------------------------------------------
def start_training(table_name: str, model_version: str, lineage: dict[str, Any]) -> None:
    """PrepareDataset: create the item as ``training`` with the dataset's lineage."""
    # Retried invocations may re-create the item while it is still "training"; any later
    # status means the run moved on, and this write would be stale.
    now = now_iso()
    try:
        aws.table(table_name).put_item(
            Item={
                "model_version": model_version,
                "status": TRAINING,
                **lineage,
                "created_at": now,
                "created_month": month_of(now),  # on by_month (tuneloop/month_index.py)
                "updated_at": now,
            },
            ConditionExpression="attribute_not_exists(model_version) OR #status = :training",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":training": TRAINING},
        )
    except ClientError as exc:
        if _condition_failed(exc):
            raise VersionTransitionError(
                f"{model_version} already moved past training; not restarting it"
            ) from exc
        raise


def record_gate_decision(
    table_name: str,
    model_version: str,
    *,
    decision_uri: str,
    approved: bool,
    at: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Gate: store the decision; a rejected candidate becomes ``rejected``.

    ``extra``: what list views show without opening the decision (``gate_approved``,
    ``gate_summary``, ``scores``, ``benchmark_versions``; see tuneloop/gating/scores.py)."""
    if extra and "status" in extra:
        raise ValueError("a version's status changes only through a named transition")
    fields: dict[str, Any] = {**(extra or {}), "decision_s3_uri": decision_uri, "gated_at": at}
    if approved:
        _set(table_name, model_version, fields, from_statuses=(TRAINING,), create=False)
    else:
        _transition(table_name, model_version, REJECTED, fields, from_statuses=(TRAINING,))


def register(table_name: str, model_version: str, fields: dict[str, Any]) -> None:
    _transition(table_name, model_version, REGISTERED, fields, from_statuses=(TRAINING,))


def start_deploying(table_name: str, model_version: str, fields: dict[str, Any]) -> None:
    _transition(table_name, model_version, DEPLOYING, fields, from_statuses=DEPLOYABLE)


def promote(table_name: str, model_version: str, fields: dict[str, Any]) -> None:
    """ConfirmDeployment: the endpoint serves this version."""
    _transition(table_name, model_version, PRODUCTION, fields, from_statuses=(DEPLOYING,))


def supersede(table_name: str, model_version: str, fields: dict[str, Any]) -> bool:
    """The previous production version stays deployable; False if it was no longer
    production (a rollback got there first)."""
    try:
        _transition(table_name, model_version, DEPLOYED, fields, from_statuses=(PRODUCTION,))
    except VersionTransitionError:
        return False
    return True


def roll_back(table_name: str, model_version: str, fields: dict[str, Any]) -> None:
    _transition(
        table_name, model_version, ROLLED_BACK, fields, from_statuses=(PRODUCTION, DEPLOYING)
    )


def restore(table_name: str, model_version: str, fields: dict[str, Any]) -> None:
    """A rollback put this (earlier) version back into production."""
    _transition(
        table_name,
        model_version,
        PRODUCTION,
        fields,
        from_statuses=(DEPLOYED, ROLLED_BACK, DEPLOYING, REGISTERED),
    )


def fail(table_name: str, model_version: str, fields: dict[str, Any]) -> str:
    """RecordFailure: the run failed. A version already in production keeps serving, so it
    keeps its status and only records the error. Returns the status it ends in."""
    item = get_version(table_name, model_version) or {}
    status = str(item.get("status", ""))
    if status == PRODUCTION:
        set_fields(table_name, model_version, fields)
        return PRODUCTION
    _transition(
        table_name,
        model_version,
        FAILED,
        fields,
        from_statuses=tuple(s for s in STATUSES if s != PRODUCTION),
        create=True,
    )
    return FAILED


def set_fields(table_name: str, model_version: str, fields: dict[str, Any]) -> None:
    """Fields other than the status (a version's notes, an error on a serving version)."""
    if "status" in fields:
        raise ValueError("a version's status changes only through a named transition")
    _set(table_name, model_version, fields, from_statuses=None, create=False)


# -- one conditional write -----------------------------------------------------------------
def _transition(
    table_name: str,
    model_version: str,
    status: str,
    fields: dict[str, Any],
    *,
    from_statuses: tuple[str, ...],
    create: bool = False,
) -> None:
    _set(
        table_name,
        model_version,
        {**fields, "status": status},
        from_statuses=(*from_statuses, status),  # repeating it is a no-op, not an error
        create=create,
    )


def _set(
    table_name: str,
    model_version: str,
    fields: dict[str, Any],
    *,
    from_statuses: tuple[str, ...] | None,
    create: bool,
) -> None:
    values = {**fields, "updated_at": now_iso()}
    names = {f"#f{index}": name for index, name in enumerate(values)}
    expression_values = {f":v{index}": value for index, value in enumerate(values.values())}
    assignments = ", ".join(f"#f{index} = :v{index}" for index in range(len(values)))
    conditions = []
    if from_statuses is not None:
        names["#status"] = "status"
        allowed = []
        for index, status in enumerate(dict.fromkeys(from_statuses)):
            expression_values[f":from{index}"] = status
            allowed.append(f":from{index}")
        conditions.append(f"#status IN ({', '.join(allowed)})")
    if create:
        conditions.append("attribute_not_exists(#key)")
    names["#key"] = "model_version"
    condition = " OR ".join(conditions) if conditions else ""
    if not create:
        condition = (
            f"attribute_exists(#key) AND ({condition})" if condition else ("attribute_exists(#key)")
        )
    try:
        aws.table(table_name).update_item(
            Key={"model_version": model_version},
            UpdateExpression=f"SET {assignments}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=expression_values,
            ConditionExpression=condition,
        )
    except ClientError as exc:
        if not _condition_failed(exc):
            raise
        current = get_version(table_name, model_version)
        target = fields.get("status", "updated")
        if current is None:
            raise VersionTransitionError(
                f"ModelVersions has no item for {model_version}; cannot make it {target}"
            ) from exc
        raise VersionTransitionError(
            f"{model_version} is {current.get('status', '?')}; it cannot become {target} "
            f"(allowed from: {', '.join(from_statuses or ())})"
        ) from exc


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
