"""Incident notifications people read: SNS (the notify topic) and a chat webhook.

The webhook takes ``{"text": ...}``, which Slack and Microsoft Teams incoming webhooks both
accept. Its URL is the value of a Secrets Manager secret (plain, or JSON with ``url``) named
by the stage's ``incidents.webhook_secret_name``; it is never in the template or the logs.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from typing import Any

from tuneloop import aws

WEBHOOK_TIMEOUT_SECONDS = 5


def _number(value: Any) -> str:
    return f"{value:+.3f}" if isinstance(value, int | float) else "-"


def describe_changes(changes: Mapping[str, Any]) -> list[str]:
    """One line per kind of change against last-known-good."""
    if not changes:
        return []
    lines = [f"Changes since last-known-good {changes.get('against', '?')}:"]
    drops = list(changes.get("drops_added") or ())
    counts = list(changes.get("record_count") or (None, None))
    if drops or counts[0] != counts[1]:
        added = ", ".join(f"{d['drop_id']} ({d['records']} records)" for d in drops[:5])
        more = f" and {len(drops) - 5} more" if len(drops) > 5 else ""
        lines.append(
            f"  data: {counts[0]} → {counts[1]} records; drops added: {added or 'none'}{more}"
        )
    for parameter in changes.get("hyperparameters") or ():
        lines.append(f"  {parameter['name']}: {parameter['a']} → {parameter['b']}")
    for score in changes.get("scores") or ():
        ci = (
            f" [{_number(score.get('ci_low'))}, {_number(score.get('ci_high'))}]"
            if score.get("ci_low") is not None
            else ""
        )
        lines.append(f"  {score['suite']}: {_number(score.get('diff'))}{ci}")
    gate = changes.get("gate") or {}
    if gate:
        verdict = "approved" if gate.get("approved") else "rejected"
        lines.append(f"  gate: {verdict}: {gate.get('summary', '')}")
    return lines


def _deploying_line(deploying: Mapping[str, Any]) -> list[str]:
    if not deploying.get("model_version"):
        return []
    since = f" (started {deploying['since']})" if deploying.get("since") else ""
    return [
        f"Being deployed when it fired: {deploying['model_version']}{since}; the changes "
        "below are its own against production"
    ]


def incident_message(incident: Mapping[str, Any], *, console_url: str = "") -> str:
    """What happened, which version, what was done, where to look."""
    production = incident.get("production") or {}
    version = production.get("model_version") or "none"
    since = f" (since {production['since']})" if production.get("since") else ""
    lines = [
        f"TuneLoop incident {incident['incident_id']}: {incident.get('alarm_name', '')} fired",
        f"What happened: {incident.get('summary') or incident.get('reason') or 'an alarm fired'}",
        f"Version in production: {version}{since}"
        + (f" on model line {production['model_line']}" if production.get("model_line") else ""),
        *_deploying_line(incident.get("deploying") or {}),
        f"What is done automatically: {incident.get('automatic_response', 'notification only')}",
    ]
    for action in incident.get("automatic_actions") or ():
        lines.append(f"  done: {action.get('text') or action.get('action')}")
    failure = incident.get("failure") or {}
    if failure:
        lines.append(
            f"Failed run: {failure.get('model_version')}: {failure.get('error')} "
            f"{failure.get('cause', '')[:300]}"
        )
    lines += describe_changes(incident.get("changes") or {})
    if incident.get("runbook"):
        lines.append(f"Runbook: {incident['runbook']}")
    lines.append(f"Details: tuneloop incidents show {incident['incident_id']}")
    if console_url:
        lines.append(f"Console: {console_url.rstrip('/')}/incidents/{incident['incident_id']}")
    return "\n".join(lines)


def publish(topic_arn: str, subject: str, message: str) -> None:
    aws.sns().publish(TopicArn=topic_arn, Subject=subject[:100], Message=message)


def webhook_url(secret_name: str) -> str:
    value = str(aws.client("secretsmanager").get_secret_value(SecretId=secret_name)["SecretString"])
    text = value.strip()
    if text.startswith("{"):
        text = str(json.loads(text).get("url", ""))
    if not text.startswith(("https://", "http://")):
        raise ValueError(f"secret {secret_name} holds no http(s) webhook URL")
    return text


def post_webhook(url: str, message: str) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps({"text": message}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    # The URL is the operator's own secret, checked to be http(s) by webhook_url.
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
        if response.status >= 300:
            raise RuntimeError(f"the webhook answered HTTP {response.status}")
