"""The Incidents function's work: an alarm notification → an incident, announced.

Both SNS topics deliver to it. An ALARM opens an incident with its context
(tuneloop/incidents/context.py) and announces it (SNS, the webhook); an OK adds to the
newest unresolved incident of that alarm; anything else on the topics (the platform's own
notifications, this function's announcements) is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tuneloop.incidents import notify, store
from tuneloop.incidents.context import gather
from tuneloop.incidents.record import TimelineEvent, incident_id, runbook_of, summary_of
from tuneloop.operations.names import PlatformNames
from tuneloop.release.model_versions import now_iso
from tuneloop.release.rollback import AlarmNotice

ROLLBACK_RESPONSE = "rollback to last-known-good (the Rollback function, on this alarm)"
NOTIFY_RESPONSE = "notification only: a person decides"


@dataclass(frozen=True)
class ResponseSettings:
    names: PlatformNames
    incidents_table: str
    notify_topic_arn: str
    alarm_topic_arn: str
    console_url: str = ""
    metric_minutes_before: int = 30
    webhook_secret_name: str = ""


def handle_event(event: dict[str, Any], settings: ResponseSettings) -> list[dict[str, Any]]:
    """One result per SNS record."""
    results = []
    for record in event.get("Records") or ():
        sns = record.get("Sns") or {}
        try:
            message = json.loads(sns.get("Message") or "")
        except ValueError:
            message = None
        if not AlarmNotice.is_alarm_message(message):
            results.append({"action": "ignored", "reason": "not an alarm notification"})
            continue
        notice = AlarmNotice.from_message(message)
        results.append(respond(notice, str(sns.get("TopicArn", "")), settings))
    return results


def respond(notice: AlarmNotice, topic_arn: str, settings: ResponseSettings) -> dict[str, Any]:
    result: dict[str, Any] = {"alarm_name": notice.alarm_name, "state": notice.new_state}
    if notice.new_state == "OK":
        return {**result, **_alarm_ended(notice, settings)}
    if notice.new_state != "ALARM":
        return {**result, "action": "ignored", "reason": f"state {notice.new_state}"}
    key = incident_id(notice.alarm_name, notice.state_change_time)
    opened_at = now_iso()
    fields = {
        "alarm_name": notice.alarm_name,
        "summary": summary_of(notice.description),
        "runbook": runbook_of(notice.description),
        "reason": notice.reason,
        "state_change_time": notice.state_change_time,
        "source_topic": topic_arn,
        "automatic_response": (
            ROLLBACK_RESPONSE
            if topic_arn and topic_arn == settings.alarm_topic_arn
            else NOTIFY_RESPONSE
        ),
        **gather(settings.names, notice, settings.metric_minutes_before),
    }
    if not store.open_incident(settings.incidents_table, key, opened_at=opened_at, fields=fields):
        return {**result, "action": "duplicate", "incident_id": key}
    incident = store.get_incident(settings.incidents_table, key).to_dict()
    message = notify.incident_message({**fields, **incident}, console_url=settings.console_url)
    channels = _announce(key, notice, message, settings)
    return {**result, "action": "opened", "incident_id": key, "notified": channels}


def _announce(key: str, notice: AlarmNotice, message: str, settings: ResponseSettings) -> list[str]:
    """Send the message everywhere configured; the timeline says where it went or failed."""
    sent, failed = [], []
    subject = f"TuneLoop incident {key}: {notice.alarm_name}"
    try:
        notify.publish(settings.notify_topic_arn, subject, message)
        sent.append("sns")
    except Exception as exc:  # the incident stays recorded; the timeline says what failed
        failed.append(f"sns: {exc}")
    if settings.webhook_secret_name:
        try:
            notify.post_webhook(notify.webhook_url(settings.webhook_secret_name), message)
            sent.append("webhook")
        except Exception as exc:
            failed.append(f"webhook: {type(exc).__name__}: {exc}")
    text = f"notified: {', '.join(sent) or 'nowhere'}" + (
        f"; failed: {'; '.join(failed)}" if failed else ""
    )
    store.add_event(settings.incidents_table, key, TimelineEvent(now_iso(), "notified", text))
    return sent


def _alarm_ended(notice: AlarmNotice, settings: ResponseSettings) -> dict[str, Any]:
    incident = store.newest_unresolved(settings.incidents_table, notice.alarm_name)
    if incident is None:
        return {"action": "ignored", "reason": "no unresolved incident of this alarm"}
    store.add_event(
        settings.incidents_table,
        incident.incident_id,
        TimelineEvent(now_iso(), "ok", f"{notice.alarm_name} back to OK ({notice.reason})"),
    )
    return {"action": "updated", "incident_id": incident.incident_id}
