"""The gate policy in force: the Control item ``key="gate_policy"``, else the stage's.

An admin changes the policy at run time (``actions.set_gate_policy``); the Gate function
reads it on every run and falls back to its environment's ``GATE_POLICY`` (the stage config,
validated at synth) when no item exists. Both go through ``tuneloop.gating.policy.parse_policy``:
one schema, the same checks at synth and at run time.

Item: ``{key: "gate_policy", policy: <JSON text>, by: str, at: ISO-8601}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tuneloop import aws
from tuneloop.gating.policy import GatePolicy, parse_policy

GATE_POLICY_KEY = "gate_policy"
SOURCE = "gate policy"


def stored_policy(control_table: str) -> GatePolicy | None:
    """The policy stored in Control, or None (the stage's policy applies)."""
    item = (
        aws.table(control_table)
        .get_item(Key={"key": GATE_POLICY_KEY}, ConsistentRead=True)
        .get("Item")
    )
    if not item or not item.get("policy"):
        return None
    return parse_policy(str(item["policy"]), source=f"Control item {GATE_POLICY_KEY!r}")


def policy_in_force(control_table: str | None, fallback: str | Mapping[str, Any]) -> GatePolicy:
    """Control's policy if one is stored, else ``fallback`` (the environment's JSON)."""
    stored = stored_policy(control_table) if control_table else None
    return stored if stored is not None else parse_policy(fallback)


def store_policy(control_table: str, policy: Mapping[str, Any], *, by: str) -> GatePolicy:
    """Validate ``policy`` (``PolicyError`` naming the field) and store it."""
    parsed = parse_policy(dict(policy), source=SOURCE)
    aws.table(control_table).put_item(
        Item={
            "key": GATE_POLICY_KEY,
            "policy": json.dumps(parsed.to_dict(), sort_keys=True),
            "by": by,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return parsed
