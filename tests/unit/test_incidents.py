"""Incidents without AWS: ids, runbook and summary parsing, the message people read, the
settings' validation, the CLI's rendering and the local Step Functions metric."""

from __future__ import annotations

import datetime

import pytest

from tuneloop.incidents.commands import render_incident, render_list
from tuneloop.incidents.notify import describe_changes, incident_message
from tuneloop.incidents.record import (
    Incident,
    incident_id,
    parse_time,
    runbook_of,
    summary_of,
)
from tuneloop.incidents.settings import IncidentSettings
from tuneloop.local.sfn_metrics import execution_datum

CHANGES = {
    "against": "v1",
    "record_count": [10, 17],
    "drops_added": [{"drop_id": "d2", "records": 7, "dataset": "faq"}],
    "hyperparameters": [{"name": "learning_rate", "a": 0.0001, "b": 0.003}],
    "scores": [{"suite": "acme", "diff": -0.25, "ci_low": -0.4, "ci_high": -0.1}],
    "gate": {"approved": True, "summary": "acme +0.30"},
}


def test_the_same_alarm_change_always_has_the_same_id() -> None:
    first = incident_id("tuneloop-5xx", "2026-12-04T18:00:00.000+0000")
    assert first == incident_id("tuneloop-5xx", "2026-12-04T18:00:00.000+0000")
    assert first.startswith("inc-20261204-") and len(first) == len("inc-20261204-") + 6
    assert first != incident_id("tuneloop-5xx", "2026-12-04T18:05:00.000+0000")
    assert first != incident_id("tuneloop-latency", "2026-12-04T18:00:00.000+0000")


def test_cloudwatch_times_parse_with_their_offset() -> None:
    moment = parse_time("2026-12-04T18:00:00.000+0000")
    assert moment == datetime.datetime(2026, 12, 4, 18, tzinfo=datetime.UTC)
    assert parse_time("2026-12-04T19:00:00+01:00") == moment
    assert parse_time("2026-12-04T18:00:00Z") == moment


def test_runbook_and_summary_come_from_the_description() -> None:
    description = "Empty answers above bound.\nMore text. Runbook: docs/runbooks/quality-empty.md"
    assert runbook_of(description) == "docs/runbooks/quality-empty.md"
    assert summary_of(description) == "Empty answers above bound."
    assert runbook_of("no runbook here") == "" and summary_of("") == ""


def test_the_message_says_what_which_version_what_was_done_and_where() -> None:
    message = incident_message(
        {
            "incident_id": "inc-20261204-abcdef",
            "alarm_name": "tuneloop-quality-empty",
            "summary": "Empty answers above bound.",
            "production": {"model_version": "v2", "since": "2026-12-04T17:00:00"},
            "automatic_response": "rollback to last-known-good",
            "automatic_actions": [{"action": "rollback", "text": "rolled back from v2 to v1"}],
            "changes": CHANGES,
            "runbook": "docs/runbooks/quality-empty.md",
        },
        console_url="https://console.example/",
    )
    assert "Version in production: v2 (since 2026-12-04T17:00:00)" in message
    assert "done: rolled back from v2 to v1" in message
    assert "d2 (7 records)" in message and "learning_rate: 0.0001 → 0.003" in message
    assert "acme: -0.250 [-0.400, -0.100]" in message
    assert "https://console.example/incidents/inc-20261204-abcdef" in message
    assert "tuneloop incidents show inc-20261204-abcdef" in message


def test_no_changes_no_lines() -> None:
    assert describe_changes({}) == []


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (IncidentSettings(max_automatic_rollbacks=0), "max_automatic_rollbacks"),
        (IncidentSettings(rollback_window_hours=-1), "rollback_window_hours"),
        (IncidentSettings(metric_minutes_before=2000), "metric_minutes_before"),
        (IncidentSettings(webhook_secret_name="bad name!"), "webhook_secret_name"),
    ],
)
def test_bad_settings_are_named(settings: IncidentSettings, field: str) -> None:
    assert field in [name for name, _ in settings.problems()]


def test_good_settings_pass() -> None:
    assert IncidentSettings().problems() == []
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tuneloop/chat-AbCdEf"
    assert IncidentSettings(webhook_secret_name=arn).problems() == []


def test_the_cli_shows_the_incident_as_people_read_it() -> None:
    incident = Incident.from_item(
        {
            "incident_id": "inc-1",
            "status": "resolved",
            "opened_at": "2026-12-04T18:00:01",
            "alarm_name": "tuneloop-5xx",
            "summary": "Errors.",
            "production": {"model_version": "v2"},
            "metric": {"namespace": "AWS/SageMaker", "name": "Invocation5XXErrors"},
            "metric_values": [{"at": "2026-12-04T17:59:00+00:00", "value": 3.0}],
            "changes": CHANGES,
            "root_cause": "bad drop d2",
            "timeline": [
                {"at": "2026-12-04T18:00:03", "event": "rolled_back", "text": "v2 → v1"},
                {"at": "2026-12-04T18:00:01", "event": "opened", "text": "fired"},
            ],
        }
    )
    text = render_incident(incident)
    assert "in production when it fired: v2" in text and "root cause: bad drop d2" in text
    assert "17:59:00 3" in text
    assert text.index("opened: fired") < text.index("rolled_back: v2 → v1")  # in time order
    assert "inc-1" in render_list([incident]) and render_list([]) == "no incidents"


def test_an_ended_execution_publishes_the_metric_aws_publishes() -> None:
    datum = execution_datum("arn:sm", "FAILED")
    assert datum is not None and datum["MetricName"] == "ExecutionsFailed"
    assert datum["Dimensions"] == [{"Name": "StateMachineArn", "Value": "arn:sm"}]
    assert execution_datum("arn:sm", "RUNNING") is None
