"""Freeze: stop automatic deployment (the Control item ``key="freeze"``).

While frozen, a retrain run still trains, evaluates, gates and registers; its Deploy step
returns ``held`` and the run ends in the state ``HeldByFreeze`` (the version stays
``registered``; ``tuneloop deploy VERSION`` deploys it later). Manual deploys and rollbacks,
and the alarms' automatic rollbacks, are not held.

Item: ``{key: "freeze", frozen: bool, reason: str, by: str, at: ISO-8601}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from tuneloop import aws

FREEZE_KEY = "freeze"


@dataclass(frozen=True)
class FreezeState:
    frozen: bool
    reason: str = ""
    by: str = ""
    at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_freeze(control_table: str) -> FreezeState:
    item = (
        aws.table(control_table).get_item(Key={"key": FREEZE_KEY}, ConsistentRead=True).get("Item")
    )
    if not item:
        return FreezeState(frozen=False)
    return FreezeState(
        frozen=bool(item.get("frozen", False)),
        reason=str(item.get("reason", "")),
        by=str(item.get("by", "")),
        at=str(item.get("at", "")),
    )


def write_freeze(control_table: str, *, frozen: bool, reason: str, by: str) -> FreezeState:
    state = FreezeState(
        frozen=frozen, reason=reason, by=by, at=datetime.now(UTC).isoformat(timespec="seconds")
    )
    aws.table(control_table).put_item(Item={"key": FREEZE_KEY, **state.to_dict()})
    return state
