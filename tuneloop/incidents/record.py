"""One incident: what fired, the state of the platform then, what was done, what followed.

Item of the Incidents table (partition key ``incident_id``; GSI ``by_month`` on
``opened_month`` + ``opened_at``, tuneloop/month_index.py)::

    incident_id     "inc-20261204-3f9a1c" (from the alarm and its state-change time)
    status          open | acknowledged | resolved
    opened_at       ISO-8601 UTC;  opened_month "YYYY-MM"
    alarm_name, summary, runbook, reason, source_topic
    metric          the alarm's metric: namespace, name, dimensions, statistic, threshold ...
    metric_values   [{"at", "value"}] around the state change
    production      {"model_version", "since", "endpoint_config_name"} when it fired
    last_known_good {"model_version"} (what a rollback restores)
    changes         against last-known-good: drops and records added, hyperparameters,
                    benchmark deltas, the gate's decision
    failure         a pipeline failure's failed version and its error
    automatic_response  what the platform does on this alarm by design
    automatic_actions [{"at", "action", ...}]: rollback, freeze
    timeline        [{"at", "event", "text", "by"}]: everything, in order
    acknowledged_by/at, resolved_by/at, root_cause
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
STATUSES = (OPEN, ACKNOWLEDGED, RESOLVED)
_RUNBOOK = re.compile(r"Runbook:\s*(docs/runbooks/[\w.-]+\.md)")


def incident_id(alarm_name: str, state_change_time: str) -> str:
    """The same id for the same alarm state change, whoever records it first (the
    Incidents function opening it, the Rollback function adding its action)."""
    digest = hashlib.sha256(f"{alarm_name}@{state_change_time}".encode()).hexdigest()[:6]
    day = re.sub(r"\D", "", state_change_time)[:8] or "00000000"
    return f"inc-{day}-{digest}"


def parse_time(text: str) -> datetime.datetime:
    """CloudWatch's ``StateChangeTime`` (``2026-12-04T18:00:00.000+0000``) or ISO-8601."""
    value = text.strip()
    if len(value) > 5 and value[-5] in "+-" and value[-4:].isdigit():
        value = f"{value[:-2]}:{value[-2:]}"  # +0000 → +00:00
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.datetime.now(datetime.UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def runbook_of(description: str) -> str:
    """The ``docs/runbooks/<name>.md`` an alarm's description names, or ""."""
    found = _RUNBOOK.search(description or "")
    return found.group(1) if found else ""


def summary_of(description: str) -> str:
    """The first line of an alarm's description: what it means, for people."""
    return (description or "").strip().splitlines()[0] if (description or "").strip() else ""


@dataclass(frozen=True)
class TimelineEvent:
    at: str
    event: str  # opened | rolled_back | frozen | ok | notified | acknowledged | resolved | ...
    text: str
    by: str = "platform"

    def to_dict(self) -> dict[str, str]:
        return {"at": self.at, "event": self.event, "text": self.text, "by": self.by}


@dataclass(frozen=True)
class Incident:
    incident_id: str
    status: str
    opened_at: str
    alarm_name: str = ""
    summary: str = ""
    runbook: str = ""
    reason: str = ""
    metric: dict[str, Any] = field(default_factory=dict)
    metric_values: tuple[dict[str, Any], ...] = ()
    production: dict[str, Any] = field(default_factory=dict)
    last_known_good: dict[str, Any] = field(default_factory=dict)
    deploying: dict[str, Any] = field(default_factory=dict)
    """The version being deployed when it fired (a canary or linear shift under way)."""
    changes: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] = field(default_factory=dict)
    """A pipeline failure's failed version and its error."""
    automatic_response: str = ""
    """What the platform does on this alarm by design (rollback, or notification only)."""
    automatic_actions: tuple[dict[str, Any], ...] = ()
    timeline: tuple[dict[str, Any], ...] = ()
    acknowledged_by: str = ""
    acknowledged_at: str = ""
    resolved_by: str = ""
    resolved_at: str = ""
    root_cause: str = ""

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Incident:
        def text(name: str) -> str:
            return str(item.get(name) or "")

        return cls(
            incident_id=text("incident_id"),
            status=text("status") or OPEN,
            opened_at=text("opened_at"),
            alarm_name=text("alarm_name"),
            summary=text("summary"),
            runbook=text("runbook"),
            reason=text("reason"),
            metric=dict(item.get("metric") or {}),
            metric_values=tuple(dict(v) for v in item.get("metric_values") or ()),
            production=dict(item.get("production") or {}),
            last_known_good=dict(item.get("last_known_good") or {}),
            deploying=dict(item.get("deploying") or {}),
            changes=dict(item.get("changes") or {}),
            failure=dict(item.get("failure") or {}),
            automatic_response=text("automatic_response"),
            automatic_actions=tuple(dict(a) for a in item.get("automatic_actions") or ()),
            timeline=tuple(
                sorted((dict(e) for e in item.get("timeline") or ()), key=lambda e: e.get("at", ""))
            ),
            acknowledged_by=text("acknowledged_by"),
            acknowledged_at=text("acknowledged_at"),
            resolved_by=text("resolved_by"),
            resolved_at=text("resolved_at"),
            root_cause=text("root_cause"),
        )

    @property
    def model_version(self) -> str:
        return str(self.production.get("model_version") or "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "status": self.status,
            "opened_at": self.opened_at,
            "alarm_name": self.alarm_name,
            "summary": self.summary,
            "runbook": self.runbook,
            "reason": self.reason,
            "metric": self.metric,
            "metric_values": list(self.metric_values),
            "production": self.production,
            "last_known_good": self.last_known_good,
            "deploying": self.deploying,
            "changes": self.changes,
            "failure": self.failure,
            "automatic_response": self.automatic_response,
            "automatic_actions": list(self.automatic_actions),
            "timeline": list(self.timeline),
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
            "resolved_by": self.resolved_by,
            "resolved_at": self.resolved_at,
            "root_cause": self.root_cause,
        }
