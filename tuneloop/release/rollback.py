"""Rollback: a CloudWatch alarm (via SNS) restores the last-known-good model.

Alarms during a blue/green deployment are SageMaker's to handle (AutoRollbackConfiguration);
this covers every later moment. Each alarm state change is handled once: the production
item remembers the last incident it rolled back for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tuneloop import aws
from tuneloop.release import model_versions
from tuneloop.release.control import ProductionChangedError, read_production, replace_production
from tuneloop.release.deployment import describe_endpoint
from tuneloop.release.model_versions import now_iso

NOTHING_TO_ROLL_BACK = "no last-known-good; nothing to roll back"


@dataclass(frozen=True)
class AlarmNotice:
    alarm_name: str
    new_state: str
    state_change_time: str
    reason: str
    dimensions: dict[str, str]

    @property
    def incident(self) -> str:
        return f"{self.alarm_name}@{self.state_change_time}"

    @classmethod
    def from_sns_event(cls, event: dict[str, Any]) -> AlarmNotice:
        try:
            message = json.loads(event["Records"][0]["Sns"]["Message"])
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
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(
                "expected an SNS event whose Records[0].Sns.Message is a CloudWatch alarm "
                f"notification (AlarmName, NewStateValue); could not read {exc}"
            ) from exc


@dataclass(frozen=True)
class RollbackSettings:
    endpoint_name: str
    control_table: str
    model_versions_table: str
    topic_arn: str


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
    if production is None or production.last_known_good is None:
        current = production.current.model_version if production else "none"
        _notify(
            settings, subject, f"{NOTHING_TO_ROLL_BACK} (production: {current}). {alarm.reason}"
        )
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
        _notify(settings, subject, f"Alarm {alarm.alarm_name} fired; no rollback: {blocker}.")
        return {**result, "action": "none", "reason": blocker}

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
                    "incident": alarm.incident,
                    "alarm_name": alarm.alarm_name,
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
        {"rolled_back_at": at, "rollback_alarm": alarm.alarm_name},
    )
    model_versions.restore(settings.model_versions_table, good.model_version, {"restored_at": at})
    _notify(
        settings,
        f"TuneLoop: rolled back {settings.endpoint_name} to {good.model_version}",
        f"Alarm {alarm.alarm_name} went to ALARM ({alarm.reason}). Endpoint "
        f"{settings.endpoint_name} is switching from {bad.model_version} "
        f"({bad.endpoint_config_name}) back to {good.model_version} "
        f"({good.endpoint_config_name}). There is no further last-known-good until the next "
        "successful deployment.",
    )
    return {
        **result,
        "action": "rolled_back",
        "reason": f"{alarm.alarm_name} in ALARM",
        "from_version": bad.model_version,
        "to_version": good.model_version,
        "endpoint_config_name": good.endpoint_config_name,
    }
