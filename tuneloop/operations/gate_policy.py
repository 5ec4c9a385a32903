"""The gate policy in force: the Control item ``key="gate_policy"``, else the stage's.

An admin changes the policy at run time (``actions.set_gate_policy``); the Gate function
reads it on every run and falls back to its environment's ``GATE_POLICY`` (the stage config,
validated at synth) when no item exists. Both go through ``tuneloop.gating.policy.parse_policy``:
one schema, the same checks at synth and at run time.

A model line has its own override, ``key="gate_policy#<line>"``, which falls back to the
line's policy in the stage config (``ModelLineSettings.policy``: its own, else the stage's);
the endpoint's ``gate_policy`` item does not apply to a line.

Item: ``{key: "gate_policy" | "gate_policy#<line>", policy: <JSON text>, by: str, at: ISO-8601}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tuneloop import aws
from tuneloop.gating.policy import GatePolicy, parse_policy
from tuneloop.model_line_settings import ModelLineSettings

GATE_POLICY_KEY = "gate_policy"
SOURCE = "gate policy"


def gate_policy_key(model_line: str = "") -> str:
    """The Control key of a line's policy override (the endpoint's own without a line)."""
    return f"{GATE_POLICY_KEY}#{model_line}" if model_line else GATE_POLICY_KEY


def stored_policy(control_table: str, model_line: str = "") -> GatePolicy | None:
    """The policy stored in Control (for ``model_line``), or None (the stage's applies)."""
    key = gate_policy_key(model_line)
    item = aws.table(control_table).get_item(Key={"key": key}, ConsistentRead=True).get("Item")
    if not item or not item.get("policy"):
        return None
    return parse_policy(str(item["policy"]), source=f"Control item {key!r}")


def policy_in_force(control_table: str | None, fallback: str | Mapping[str, Any]) -> GatePolicy:
    """Control's policy if one is stored, else ``fallback`` (the environment's JSON)."""
    stored = stored_policy(control_table) if control_table else None
    return stored if stored is not None else parse_policy(fallback)


def line_policy_in_force(
    control_table: str | None, line: ModelLineSettings, stage_policy: str | Mapping[str, Any]
) -> GatePolicy:
    """The line's override in Control if one is stored, else the line's stage policy."""
    stored = stored_policy(control_table, line.name) if control_table else None
    return stored if stored is not None else line.policy(stage_policy)


def run_policy(
    control_table: str | None,
    line: ModelLineSettings | None,
    stage_policy: str | Mapping[str, Any],
) -> GatePolicy:
    """The policy a run gates by: its line's in force, or the endpoint's without a line."""
    if line is None:
        return policy_in_force(control_table, stage_policy)
    return line_policy_in_force(control_table, line, stage_policy)


def store_policy(
    control_table: str, policy: Mapping[str, Any], *, by: str, model_line: str = ""
) -> GatePolicy:
    """Validate ``policy`` (``PolicyError`` naming the field) and store it (for
    ``model_line``: that line's override)."""
    parsed = parse_policy(dict(policy), source=SOURCE)
    aws.table(control_table).put_item(
        Item={
            "key": gate_policy_key(model_line),
            "policy": json.dumps(parsed.to_dict(), sort_keys=True),
            "by": by,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return parsed
