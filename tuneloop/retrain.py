"""Start the retrain state machine when enough new records arrived, one run at a time.

The Control item ``key="retrain"`` holds ``pending_records`` (added by ingest) and
``runs_started``, a counter that makes starting a run a compare-and-set: two triggers that
both see enough records and no running execution race on the same counter value, and only
one update succeeds. Records added in between are kept (the update subtracts what it saw).

With model lines (docs/training.md, "Model lines: one run per line") ingest counts each
stored record under ``pending_records#<line>`` for every line that lists its dataset, and a
run trains one line: the one with the most pending records. Its execution input names the
line and its version ends with the line (``v0007-20261207-150000-support``); only that
line's counter is subtracted. ``pending_records`` is then not kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.model_line_settings import ModelLineError, ModelLines, line_version_suffix

RETRAIN_KEY = "retrain"
PENDING_RECORDS = "pending_records"
TRIGGERS = ("threshold", "schedule", "manual")
TRAINS_NO_LINE = "their records are stored but train no model line"
"""Ends a drop's reason when no line lists its dataset (ingest logs it as a warning)."""


def pending_attribute(model_line: str = "") -> str:
    """The retrain item's counter of records not trained yet: the line's, or the one."""
    return f"{PENDING_RECORDS}#{model_line}" if model_line else PENDING_RECORDS


def pending_attributes(dataset: str, model_lines: ModelLines) -> tuple[str, ...]:
    """The counters a stored record of ``dataset`` adds to: ``pending_records`` without
    lines, else one per line that lists the dataset (none: the record trains no line)."""
    if not model_lines:
        return (PENDING_RECORDS,)
    return tuple(pending_attribute(line) for line in model_lines.lines_of_dataset(dataset))


def untrained_dataset_note(dataset: str, model_lines: ModelLines) -> str:
    """Why records of ``dataset`` start no run ("" when a line, or the one model, trains it)."""
    if not model_lines or model_lines.lines_of_dataset(dataset):
        return ""
    return (
        f"dataset {dataset!r} is in no model line's datasets (lines: "
        f"{', '.join(model_lines.names)}): {TRAINS_NO_LINE}"
    )


@dataclass(frozen=True)
class TriggerOutcome:
    started: bool
    reason: str
    pending_records: int
    execution_arn: str = ""
    model_line: str = ""

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "started": self.started,
            "reason": self.reason,
            "pending_records": self.pending_records,
        }
        if self.execution_arn:
            result["execution_arn"] = self.execution_arn
        if self.model_line:
            result["model_line"] = self.model_line
        return result


def execution_name(run_number: int, now: datetime) -> str:
    """The run's name, which is also its model version and the prefix of its job names.

    SageMaker job names allow only letters, digits and hyphens, 63 characters at most.
    """
    return f"v{run_number:04d}-{now:%Y%m%d-%H%M%S}"


@dataclass(frozen=True)
class _Due:
    """The run a trigger would start: its line ("" without lines) and pending records."""

    model_line: str
    pending: int


def _pending(item: dict[str, Any], model_line: str) -> int:
    return int(item.get(pending_attribute(model_line), 0))


def _line_due(
    item: dict[str, Any],
    *,
    model_lines: Sequence[str],
    model_line: str,
    threshold: int,
    trigger: str,
    force: bool,
) -> _Due | str:
    """The line to train, or why none is due."""
    listed = ", ".join(model_lines)
    if model_line:
        if model_line not in model_lines:
            raise ModelLineError(f"no model line {model_line!r} (lines: {listed})")
    elif force:
        raise ModelLineError(f"name the model line to retrain (lines: {listed})")
    counts = {line: _pending(item, line) for line in model_lines}
    if force:
        return _Due(model_line, counts[model_line])
    # The schedule takes any line with records waiting, so a line that stays below the
    # threshold is still trained, one scheduled run at a time.
    bar = 1 if trigger == "schedule" else threshold
    candidates = [model_line] if model_line else list(model_lines)
    # The most pending first; a tie goes to the line listed first.
    best = max(candidates, key=lambda line: (counts[line], -candidates.index(line)))
    if counts[best] >= max(bar, 1):
        return _Due(best, counts[best])
    waiting = ", ".join(f"{line}: {counts[line]}" for line in candidates)
    return f"no model line has enough new records ({waiting}; {trigger} needs {max(bar, 1)})"


def start_retrain_if_due(
    *,
    control_table: str,
    state_machine_arn: str,
    threshold: int,
    trigger: str = "threshold",
    force: bool = False,
    model_lines: Sequence[str] = (),
    model_line: str = "",
) -> TriggerOutcome:
    """Start a run if ``pending_records >= threshold`` (or ``force``) and none is running.

    With ``model_lines`` (their names) the run trains one line: ``model_line`` if given
    (a manual run must name one), else the line with the most pending records that reach
    the threshold (any pending record on the schedule)."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    if model_line and not model_lines:
        raise ModelLineError(
            f"no model line {model_line!r}: this deployment has no model lines; start the run "
            "without a line"
        )
    table = aws.table(control_table)
    item = table.get_item(Key={"key": RETRAIN_KEY}, ConsistentRead=True).get("Item") or {}
    runs_started = int(item.get("runs_started", 0))  # type: ignore[arg-type]
    if model_lines:
        due = _line_due(
            item,
            model_lines=model_lines,
            model_line=model_line,
            threshold=threshold,
            trigger=trigger,
            force=force,
        )
        if isinstance(due, str):
            return TriggerOutcome(False, due, _pending(item, model_line))
    else:
        due = _Due("", _pending(item, ""))
        if not force and due.pending < threshold:
            return TriggerOutcome(
                False, f"{due.pending} new records, threshold is {threshold}", due.pending
            )
    line, pending = due.model_line, due.pending
    counter = pending_attribute(line)

    running = aws.stepfunctions().list_executions(
        stateMachineArn=state_machine_arn, statusFilter="RUNNING", maxResults=1
    )["executions"]
    if running:
        name = running[0]["name"]
        return TriggerOutcome(
            False, f"run {name} is still running; one run at a time", pending, model_line=line
        )

    now = datetime.now(UTC)
    try:
        table.update_item(
            Key={"key": RETRAIN_KEY},
            UpdateExpression=(
                "SET #pending = if_not_exists(#pending, :zero) - :seen, "
                "runs_started = :next, last_started_at = :now, last_trigger = :trigger"
                + (", last_model_line = :line" if line else "")
            ),
            ConditionExpression="attribute_not_exists(runs_started) OR runs_started = :current",
            ExpressionAttributeNames={"#pending": counter},
            ExpressionAttributeValues={
                ":zero": 0,
                ":seen": pending,
                ":next": runs_started + 1,
                ":current": runs_started,
                ":now": now.isoformat(),
                ":trigger": trigger,
                **({":line": line} if line else {}),
            },
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return TriggerOutcome(
            False, "another trigger started a run at the same moment", pending, model_line=line
        )

    name = execution_name(runs_started + 1, now) + line_version_suffix(line)
    run_input: dict[str, str] = {"trigger": trigger, **({"model_line": line} if line else {})}
    try:
        arn = aws.stepfunctions().start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(run_input)
        )["executionArn"]
    except ClientError:
        # Give the records back so the next trigger sees them; the run counter stays spent.
        table.update_item(
            Key={"key": RETRAIN_KEY},
            UpdateExpression="ADD #pending :seen",
            ExpressionAttributeNames={"#pending": counter},
            ExpressionAttributeValues={":seen": pending},
        )
        raise
    table.update_item(
        Key={"key": RETRAIN_KEY},
        UpdateExpression="SET last_execution_arn = :arn",
        ExpressionAttributeValues={":arn": arn},
    )
    why = "forced (manual)" if force else f"{pending} new records"
    if not force:
        why += " (schedule)" if line and trigger == "schedule" else f" >= threshold {threshold}"
    return TriggerOutcome(True, f"started {name}: {why}", pending, arn, model_line=line)
