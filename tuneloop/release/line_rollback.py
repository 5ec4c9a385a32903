"""Rollback of one model line: its alarm (via SNS), or a person, restores the line's
last-known-good adapter while the other lines serve on (docs/serving.md, "Model lines").

The endpoint rollback's guards apply: an alarm state change is handled once (the line's
production item keeps the incident it rolled back for), the alarm's incident records what
was done and counts toward the repeated-failure guard (which freezes automatic
deployments), every rollback is audited (``auto_rollback`` / ``rollback``) and told on the
notification topic. Which line an alarm belongs to: ``MODEL_LINE_ALARMS`` (alarm name →
line, from the stack), else the alarm's ``InferenceComponentName`` dimension.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from tuneloop.model_line_settings import BASE_COMPONENT
from tuneloop.operations import audit
from tuneloop.release.control import production_key, read_production
from tuneloop.release.model_lines import LineServing, roll_back_line
from tuneloop.release.model_versions import now_iso
from tuneloop.release.rollback import (
    AlarmNotice,
    ManualRollback,
    RollbackSettings,
    _notify,
    _record_in_incident,
)


def line_of_alarm(
    alarm: AlarmNotice, line_of_alarm_name: Mapping[str, str], lines: Collection[str]
) -> str:
    """The model line ``alarm`` watches, or ``""`` (an alarm of the endpoint)."""
    line = line_of_alarm_name.get(alarm.alarm_name, "")
    if line in lines:
        return line
    component = alarm.dimensions.get("InferenceComponentName", "")
    return component if component in lines else ""


def _serving(settings: RollbackSettings, model_line: str) -> LineServing:
    return LineServing(settings.endpoint_name, BASE_COMPONENT, model_line)


def roll_back_line_on_alarm(
    alarm: AlarmNotice, model_line: str, settings: RollbackSettings
) -> dict[str, str]:
    """Restore the line's last-known-good if ``alarm`` just went into ALARM."""
    result = {
        "alarm_name": alarm.alarm_name,
        "endpoint_name": settings.endpoint_name,
        "model_line": model_line,
    }
    if alarm.new_state != "ALARM":
        return {**result, "action": "ignored", "reason": f"alarm state is {alarm.new_state}"}
    production = read_production(settings.control_table, production_key(model_line))
    handled = (production.item.get("last_rollback") or {}) if production else {}
    if handled.get("incident") == alarm.incident:
        return {**result, "action": "ignored", "reason": f"{alarm.incident} was handled already"}
    outcome = {
        **result,
        **_restore_line(
            _serving(settings, model_line),
            settings,
            subject=f"TuneLoop: alarm {alarm.alarm_name} on model line {model_line}",
            trigger=f"Alarm {alarm.alarm_name} went to ALARM ({alarm.reason})",
            incident=alarm.incident,
            alarm_name=alarm.alarm_name,
            actor=audit.Actor.from_iam("pipeline"),
            action="auto_rollback",
            request_id=None,
            reason=f"{alarm.alarm_name} in ALARM",
        ),
    }
    if settings.incidents_table:
        outcome.update(_record_in_incident(alarm, outcome, settings))
    return outcome


def roll_back_line_manually(request: ManualRollback, settings: RollbackSettings) -> dict[str, str]:
    """A person's rollback of ``request.model_line`` to its last-known-good."""
    line = request.model_line
    why = request.reason or "no reason given"
    return {
        "alarm_name": "",
        "endpoint_name": settings.endpoint_name,
        "model_line": line,
        **_restore_line(
            _serving(settings, line),
            settings,
            subject=f"TuneLoop: manual rollback of model line {line}",
            trigger=f"{request.actor.name} asked for a rollback of model line {line} ({why})",
            incident=f"manual@{now_iso()}",
            alarm_name="",
            actor=request.actor,
            action="rollback",
            request_id=request.request_id or None,
            reason=f"requested by {request.actor.name}: {why}",
        ),
    }


def _restore_line(
    line: LineServing,
    settings: RollbackSettings,
    *,
    subject: str,
    trigger: str,
    incident: str,
    alarm_name: str,
    actor: audit.Actor,
    action: str,
    request_id: str | None,
    reason: str,
) -> dict[str, str]:
    done = roll_back_line(
        line,
        control_table=settings.control_table,
        model_versions_table=settings.model_versions_table,
        reason=alarm_name or reason,
        incident=incident,
    )
    if done["status"] != "rolled_back":
        _notify(settings, subject, f"{trigger}; no rollback: {done['reason']}.")
        return {"action": "none", "reason": done["reason"]}
    bad, good = done["from_version"], done["to_version"]
    if settings.audit_table:
        audit.append(
            settings.audit_table,
            actor,
            action,
            bad,
            before={"model_version": bad, "model_line": line.model_line},
            after={
                "model_version": good,
                "model_line": line.model_line,
                "inference_component": line.component,
                "endpoint_name": line.endpoint_name,
                "alarm_name": alarm_name,
            },
            request_id=request_id,
        )
    _notify(
        settings,
        f"TuneLoop: rolled back model line {line.model_line} to {good}",
        f"{trigger}. Inference component {line.component} on {line.endpoint_name} is "
        f"switching from {bad} back to {good}; the other model lines are not touched. There "
        "is no further last-known-good for this line until its next successful deployment.",
    )
    return {
        "action": "rolled_back",
        "reason": reason,
        "from_version": bad,
        "to_version": good,
        "inference_component": line.component,
    }
