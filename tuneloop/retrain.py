"""Start the retrain state machine when enough new records arrived, one run at a time.

The Control item ``key="retrain"`` holds ``pending_records`` (added by ingest) and
``runs_started``, a counter that makes starting a run a compare-and-set: two triggers that
both see enough records and no running execution race on the same counter value, and only
one update succeeds. Records added in between are kept (the update subtracts what it saw).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws

RETRAIN_KEY = "retrain"
TRIGGERS = ("threshold", "schedule", "manual")


@dataclass(frozen=True)
class TriggerOutcome:
    started: bool
    reason: str
    pending_records: int
    execution_arn: str = ""

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "started": self.started,
            "reason": self.reason,
            "pending_records": self.pending_records,
        }
        if self.execution_arn:
            result["execution_arn"] = self.execution_arn
        return result


def execution_name(run_number: int, now: datetime) -> str:
    """The run's name, which is also its model version and the prefix of its job names.

    SageMaker job names allow only letters, digits and hyphens, 63 characters at most.
    """
    return f"v{run_number:04d}-{now:%Y%m%d-%H%M%S}"


def start_retrain_if_due(
    *,
    control_table: str,
    state_machine_arn: str,
    threshold: int,
    trigger: str = "threshold",
    force: bool = False,
) -> TriggerOutcome:
    """Start a run if ``pending_records >= threshold`` (or ``force``) and none is running."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    table = aws.table(control_table)
    item = table.get_item(Key={"key": RETRAIN_KEY}, ConsistentRead=True).get("Item") or {}
    pending = int(item.get("pending_records", 0))  # type: ignore[arg-type]
    runs_started = int(item.get("runs_started", 0))  # type: ignore[arg-type]
    if not force and pending < threshold:
        return TriggerOutcome(False, f"{pending} new records, threshold is {threshold}", pending)

    running = aws.stepfunctions().list_executions(
        stateMachineArn=state_machine_arn, statusFilter="RUNNING", maxResults=1
    )["executions"]
    if running:
        name = running[0]["name"]
        return TriggerOutcome(False, f"run {name} is still running; one run at a time", pending)

    now = datetime.now(UTC)
    try:
        table.update_item(
            Key={"key": RETRAIN_KEY},
            UpdateExpression=(
                "SET pending_records = if_not_exists(pending_records, :zero) - :seen, "
                "runs_started = :next, last_started_at = :now, last_trigger = :trigger"
            ),
            ConditionExpression="attribute_not_exists(runs_started) OR runs_started = :current",
            ExpressionAttributeValues={
                ":zero": 0,
                ":seen": pending,
                ":next": runs_started + 1,
                ":current": runs_started,
                ":now": now.isoformat(),
                ":trigger": trigger,
            },
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return TriggerOutcome(False, "another trigger started a run at the same moment", pending)

    name = execution_name(runs_started + 1, now)
    try:
        arn = aws.stepfunctions().start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps({"trigger": trigger})
        )["executionArn"]
    except ClientError:
        # Give the records back so the next trigger sees them; the run counter stays spent.
        table.update_item(
            Key={"key": RETRAIN_KEY},
            UpdateExpression="ADD pending_records :seen",
            ExpressionAttributeValues={":seen": pending},
        )
        raise
    table.update_item(
        Key={"key": RETRAIN_KEY},
        UpdateExpression="SET last_execution_arn = :arn",
        ExpressionAttributeValues={":arn": arn},
    )
    why = "forced (manual)" if force else f"{pending} new records >= threshold {threshold}"
    return TriggerOutcome(True, f"started {name}: {why}", pending, arn)
