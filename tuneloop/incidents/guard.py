"""The repeated-failure guard: after N automatic rollbacks in a window, freeze deployment.

Each automatic rollback appends its time to the Control item ``key="automatic_rollbacks"``
(the newest :data:`KEPT`). When the rollbacks within ``window_hours`` reach
``max_rollbacks`` and deployment is not frozen yet, the guard freezes it
(tuneloop/operations/freeze.py): new versions still train and register, none deploys
until a person has looked (``tuneloop unfreeze``).
"""

from __future__ import annotations

import datetime
from typing import Any

from tuneloop import aws
from tuneloop.incidents.record import parse_time
from tuneloop.operations.freeze import FreezeState, read_freeze, write_freeze

ROLLBACKS_KEY = "automatic_rollbacks"
KEPT = 50
GUARD = "repeated-failure guard"


def guard_reason(count: int, window_hours: int) -> str:
    return (
        f"{count} automatic rollbacks within {window_hours} h: automatic deployment is frozen "
        "until someone finds the cause (`tuneloop unfreeze` after the fix)"
    )


def note_automatic_rollback(
    control_table: str, at: str, *, max_rollbacks: int, window_hours: int
) -> tuple[int, FreezeState | None]:
    """Count this rollback; returns (rollbacks in the window, the freeze if this one set it)."""
    table: Any = aws.table(control_table)
    item = table.update_item(
        Key={"key": ROLLBACKS_KEY},
        UpdateExpression="SET recent = list_append(if_not_exists(recent, :none), :at)",
        ExpressionAttributeValues={":none": [], ":at": [at]},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    recent = sorted(str(t) for t in item.get("recent") or ())
    if len(recent) > KEPT:
        table.update_item(
            Key={"key": ROLLBACKS_KEY},
            UpdateExpression="SET recent = :kept",
            ExpressionAttributeValues={":kept": recent[-KEPT:]},
        )
    start = parse_time(at) - datetime.timedelta(hours=window_hours)
    count = sum(1 for t in recent if parse_time(t) >= start)
    if count < max_rollbacks or read_freeze(control_table).frozen:
        return count, None
    state = write_freeze(
        control_table, frozen=True, reason=guard_reason(count, window_hours), by=GUARD
    )
    return count, state
