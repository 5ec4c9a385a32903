"""Rollback: a CloudWatch alarm (via SNS), or a person, restores the last-known-good model.

Alarms during a blue/green deployment are SageMaker's to handle (AutoRollbackConfiguration);
this covers every later moment. Each alarm state change is handled once: the production
item remembers the last incident it rolled back for. A manual rollback (``ManualRollback``,
from ``tuneloop rollback`` or the console) takes the same path after the same checks.

Each rollback appends one audit record: ``auto_rollback`` by the function's IAM principal
for an alarm, ``rollback`` by the person for a manual one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tuneloop import aws
from tuneloop.operations import audit
from tuneloop.release import autoscaling, model_versions
from tuneloop.release.autoscaling import AutoscalingSettings
from tuneloop.release.control import (
    Production,
    ProductionChangedError,
    read_production,
    replace_production,
)
from tuneloop.release.deployment import describe_endpoint
from tuneloop.release.model_versions import now_iso

NOTHING_TO_ROLL_BACK = "no last-known-good; nothing to roll back"


@dataclass(frozen=True)
class AlarmNotice:
    """A CloudWatch alarm notification (the JSON message CloudWatch publishes to SNS)."""

    alarm_name: str
    new_state: str
    state_change_time: str
    reason: str
    dimensions: dict[str, str]
    description: str = ""
    trigger: dict[str, Any] = field(default_factory=dict)

    @property
    def incident(self) -> str:
        return f"{self.alarm_name}@{self.state_change_time}"

    @staticmethod
    def is_alarm_message(message: Any) -> bool:
        return isinstance(message, dict) and "AlarmName" in message and "NewStateValue" in message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> AlarmNotice:
        trigger = message.get("Trigger") or {}
        return cls(
            alarm_name=str(message["AlarmName"]),
            new_state=str(message["NewStateValue"]),
            state_change_time=str(message.get("StateChangeTime", "")),
            reason=str(message.get("NewStateReason", "")),
            dimensions={
                str(d.get("name", d.get("Name", ""))): str(d.get("value", d.get("Value", "")))
                for d in trigger.get("Dimensions") or []
            },
            description=str(message.get("AlarmDescription") or ""),
            trigger=dict(trigger),
        )

    @classmethod
    def from_sns_event(cls, event: dict[str, Any]) -> AlarmNotice:
        try:
            return cls.from_message(json.loads(event["Records"][0]["Sns"]["Message"]))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(
                "expected an SNS event whose Records[0].Sns.Message is a CloudWatch alarm "
                f"notification (AlarmName, NewStateValue); could not read {exc}"
            ) from exc


@dataclass(frozen=True)
class ManualRollback:
    """A person's rollback to last-known-good: ``{"manual": true, "actor": {"name", "kind",
    "source"}, "reason", "request_id"}`` (the Rollback function's manual event), with
    ``"model_line": "<name>"`` to roll back that model line only."""

    actor: audit.Actor
    reason: str = ""
    request_id: str = ""
    model_line: str = ""

    @staticmethod
    def is_manual(event: dict[str, Any]) -> bool:
        return bool(event.get("manual")) and "Records" not in event

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ManualRollback:
        try:
            who = event["actor"]
            actor = audit.Actor(
                name=str(who["name"]), kind=str(who["kind"]), source=str(who["source"])
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                'a manual rollback needs "actor": {"name", "kind", "source"}; '
                f"could not read {exc}"
            ) from exc
        return cls(
            actor=actor,
            reason=str(event.get("reason", "")),
            request_id=str(event.get("request_id", "")),
            model_line=str(event.get("model_line") or ""),
        )

    def to_event(self) -> dict[str, Any]:
        event = {
            "manual": True,
            "actor": self.actor.to_dict(),
            "reason": self.reason,
            "request_id": self.request_id,
        }
        return {**event, "model_line": self.model_line} if self.model_line else event


@dataclass(frozen=True)
class RollbackSettings:
    endpoint_name: str
    control_table: str
    model_versions_table: str
    topic_arn: str
    audit_table: str = ""
    incidents_table: str = ""
    """Where an automatic rollback (or why there was none) joins the alarm's incident."""
    max_automatic_rollbacks: int = 0
    """The repeated-failure guard's N (tuneloop/incidents/guard.py); 0 switches it off."""
    rollback_window_hours: int = 24
    autoscaling: AutoscalingSettings = field(default_factory=AutoscalingSettings)
    """Suspended before the rollback's update, restored once the endpoint is InService."""
    scaling_wait_seconds: float = 0.0
    """How long to wait for InService before restoring scaling (the function's time left)."""


def _restore_scaling(settings: RollbackSettings) -> str:
    """Target tracking back on once the rollback's update is over: ``restored``, or
    ``suspended`` (told on SNS) if the endpoint did not settle within the wait."""
    if autoscaling.activate_when_in_service(
        settings.endpoint_name,
        settings.autoscaling,
        wait_seconds=settings.scaling_wait_seconds,
        describe=describe_endpoint,
    ):
        return "restored"
    _notify(
        settings,
        f"TuneLoop: autoscaling of {settings.endpoint_name} still suspended",
        f"Endpoint {settings.endpoint_name} was not InService within "
        f"{settings.scaling_wait_seconds:.0f} s of the rollback, so its autoscaling stays "
        "suspended; the next deployment restores it, or resume it with "
        "`aws application-autoscaling register-scalable-target` (docs/serving.md, "
        '"Autoscaling").',
    )
    return "suspended"


def _notify(settings: RollbackSettings, subject: str, message: str) -> None:
    aws.sns().publish(
        TopicArn=settings.topic_arn,
        Subject=subject[:100],
        Message=message,
    )


def roll_back_on_alarm(alarm: AlarmNotice, settings: RollbackSettings) -> dict[str, str]:
    """Restore last-known-good if ``alarm`` just went into ALARM for our endpoint."""
    result = {"alarm_name": alarm.alarm_name, "endpoint_name": settings.endpoint_name}
    if alarm.new_state != "ALARM":
        return {**result, "action": "ignored", "reason": f"alarm state is {alarm.new_state}"}
    alarm_endpoint = alarm.dimensions.get("EndpointName")
    if alarm_endpoint and alarm_endpoint != settings.endpoint_name:
        reason = f"alarm is about endpoint {alarm_endpoint}, not {settings.endpoint_name}"
        return {**result, "action": "ignored", "reason": reason}

    production = read_production(settings.control_table)
    handled = (production.item.get("last_rollback") or {}) if production else {}
    if handled.get("incident") == alarm.incident:
        return {**result, "action": "ignored", "reason": f"{alarm.incident} was handled already"}

    subject = f"TuneLoop: alarm {alarm.alarm_name} on {settings.endpoint_name}"
    outcome = {
        **result,
        **_restore_last_known_good(
            production,
            settings,
            subject=subject,
            trigger=f"Alarm {alarm.alarm_name} went to ALARM ({alarm.reason})",
            incident=alarm.incident,
            alarm_name=alarm.alarm_name,
            actor=audit.Actor.from_iam("pipeline") if settings.audit_table else None,
            action="auto_rollback",
            request_id=None,
            reason=f"{alarm.alarm_name} in ALARM",
        ),
    }
    if settings.incidents_table:
        outcome.update(_record_in_incident(alarm, outcome, settings))
    return outcome


def _record_in_incident(
    alarm: AlarmNotice, outcome: dict[str, str], settings: RollbackSettings
) -> dict[str, str]:
    """Add what was done to the alarm's incident; count the rollback for the guard."""
    from tuneloop.incidents import guard, store
    from tuneloop.incidents.record import TimelineEvent, incident_id

    key = incident_id(alarm.alarm_name, alarm.state_change_time)
    at = now_iso()
    if outcome["action"] != "rolled_back":
        text = f"no rollback: {outcome['reason']}"
        store.add_event(
            settings.incidents_table,
            key,
            TimelineEvent(at, "no_rollback", text, "Rollback function"),
            automatic_action={"at": at, "action": "none", "text": text},
            alarm_name=alarm.alarm_name,
        )
        return {}
    text = f"rolled back from {outcome['from_version']} to {outcome['to_version']}"
    store.add_event(
        settings.incidents_table,
        key,
        TimelineEvent(at, "rolled_back", text, "Rollback function"),
        automatic_action={
            "at": at,
            "action": "rollback",
            "from_version": outcome["from_version"],
            "to_version": outcome["to_version"],
            "text": text,
        },
        alarm_name=alarm.alarm_name,
    )
    if settings.max_automatic_rollbacks < 1:
        return {}
    count, frozen = guard.note_automatic_rollback(
        settings.control_table,
        at,
        max_rollbacks=settings.max_automatic_rollbacks,
        window_hours=settings.rollback_window_hours,
    )
    if frozen is None:
        return {"automatic_rollbacks_in_window": str(count)}
    store.add_event(
        settings.incidents_table,
        key,
        TimelineEvent(frozen.at, "frozen", frozen.reason, guard.GUARD),
        automatic_action={"at": frozen.at, "action": "freeze", "text": frozen.reason},
    )
    if settings.audit_table:
        audit.append(
            settings.audit_table,
            audit.Actor.from_iam("pipeline"),
            "freeze",
            "deployment",
            before={"frozen": False},
            after={"frozen": True, "reason": frozen.reason, "by": guard.GUARD},
        )
    _notify(
        settings,
        f"TuneLoop: automatic deployment frozen on {settings.endpoint_name}",
        f"{frozen.reason}. Incident {key}.",
    )
    return {"automatic_rollbacks_in_window": str(count), "frozen": "true"}


def roll_back_manually(request: ManualRollback, settings: RollbackSettings) -> dict[str, str]:
    """A person's rollback to last-known-good, with the alarm path's checks and effects."""
    result = {"alarm_name": "", "endpoint_name": settings.endpoint_name}
    production = read_production(settings.control_table)
    why = request.reason or "no reason given"
    return {
        **result,
        **_restore_last_known_good(
            production,
            settings,
            subject=f"TuneLoop: manual rollback of {settings.endpoint_name}",
            trigger=f"{request.actor.name} asked for a rollback ({why})",
            incident=f"manual@{now_iso()}",
            alarm_name="",
            actor=request.actor,
            action="rollback",
            request_id=request.request_id or None,
            reason=f"requested by {request.actor.name}: {why}",
        ),
    }


def _restore_last_known_good(
    production: Production | None,
    settings: RollbackSettings,
    *,
    subject: str,
    trigger: str,
    incident: str,
    alarm_name: str,
    actor: audit.Actor | None,
    action: str,
    request_id: str | None,
    reason: str,
) -> dict[str, str]:
    """The shared core: check the endpoint, switch it back, record everything."""
    result: dict[str, str] = {}
    if production is None or production.last_known_good is None:
        current = production.current.model_version if production else "none"
        _notify(settings, subject, f"{NOTHING_TO_ROLL_BACK} (production: {current}). {trigger}")
        return {**result, "action": "none", "reason": NOTHING_TO_ROLL_BACK}

    bad, good = production.current, production.last_known_good
    endpoint = describe_endpoint(settings.endpoint_name)
    blocker = ""
    if endpoint is None:
        blocker = f"endpoint {settings.endpoint_name} does not exist"
    elif endpoint.get("EndpointStatus") != "InService":
        blocker = (
            f"endpoint is {endpoint.get('EndpointStatus')}: a deployment or rollback is in "
            "progress, and alarms during a deployment are handled by its auto-rollback"
        )
    elif endpoint.get("EndpointConfigName") != bad.endpoint_config_name:
        blocker = (
            f"endpoint serves {endpoint.get('EndpointConfigName')} but production is "
            f"{bad.model_version} ({bad.endpoint_config_name}); not touching it"
        )
    if blocker:
        _notify(settings, subject, f"{trigger}; no rollback: {blocker}.")
        return {**result, "action": "none", "reason": blocker}

    # No scaling activity races the update (docs/serving.md, "Autoscaling"); restored below.
    suspended = autoscaling.suspend(settings.endpoint_name, settings.autoscaling)
    aws.sagemaker().update_endpoint(
        EndpointName=settings.endpoint_name, EndpointConfigName=good.endpoint_config_name
    )
    at = now_iso()
    try:
        replace_production(
            settings.control_table,
            good,
            last_known_good=None,
            expected=bad,
            extra={
                "last_rollback": {
                    "incident": incident,
                    "alarm_name": alarm_name,
                    "from_version": bad.model_version,
                    "at": at,
                }
            },
        )
    except ProductionChangedError as exc:
        raise ProductionChangedError(
            f"endpoint {settings.endpoint_name} is switching to {good.endpoint_config_name} "
            f"({good.model_version}), but Control 'production' changed meanwhile and was not "
            "updated: check which config the endpoint serves and fix the Control item"
        ) from exc
    model_versions.roll_back(
        settings.model_versions_table,
        bad.model_version,
        {"rolled_back_at": at, "rollback_alarm": alarm_name, "rolled_back_to": good.model_version},
    )
    model_versions.restore(settings.model_versions_table, good.model_version, {"restored_at": at})
    if actor is not None and settings.audit_table:
        audit.append(
            settings.audit_table,
            actor,
            action,
            bad.model_version,
            before={
                "model_version": bad.model_version,
                "endpoint_config_name": bad.endpoint_config_name,
            },
            after={
                "model_version": good.model_version,
                "endpoint_config_name": good.endpoint_config_name,
                "endpoint_name": settings.endpoint_name,
                "alarm_name": alarm_name,
            },
            request_id=request_id,
        )
    _notify(
        settings,
        f"TuneLoop: rolled back {settings.endpoint_name} to {good.model_version}",
        f"{trigger}. Endpoint "
        f"{settings.endpoint_name} is switching from {bad.model_version} "
        f"({bad.endpoint_config_name}) back to {good.model_version} "
        f"({good.endpoint_config_name}). There is no further last-known-good until the next "
        "successful deployment.",
    )
    scaling = {"scaling": _restore_scaling(settings)} if suspended else {}
    return {
        **result,
        **scaling,
        "action": "rolled_back",
        "reason": reason,
        "from_version": bad.model_version,
        "to_version": good.model_version,
        "endpoint_config_name": good.endpoint_config_name,
    }
