"""The console's incident pages over moto: the list, one incident, acknowledge and resolve.

Incidents are written straight into the Incidents table, with the fields the Incidents
function records (tuneloop/incidents/record.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    Platform,
    aws_credentials,
    platform,
)
from tests.integration.test_console_app import (  # noqa: F401 - fixture
    app_client,
    sign_in,
    token,
)
from tuneloop import aws
from tuneloop.incidents import store
from tuneloop.operations import audit
from tuneloop.operations.views_common import dynamodb_value

INCIDENT = "inc-20261204-3f9a1c"


def put_incident(
    platform: Platform,  # noqa: F811
    incident_id: str = INCIDENT,
    *,
    status: str = "open",
    minutes_ago: float = 0,
    **fields: Any,
) -> None:
    opened = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()
    item: dict[str, Any] = {
        "incident_id": incident_id,
        "status": status,
        "opened_at": opened,
        "opened_month": opened[:7],
        "alarm_name": "tuneloop-dev-quality-empty",
        "summary": "More than 5% of answers are empty.",
        "runbook": "docs/runbooks/quality-empty.md",
        "reason": "Threshold Crossed: 1 datapoint [0.12] was greater than the threshold (0.05).",
        "metric": {
            "namespace": "TuneLoop/Quality",
            "name": "EmptyRate",
            "dimensions": {"EndpointName": "tuneloop-endpoint"},
            "statistic": "Average",
            "period_seconds": 60,
            "comparison": "GreaterThanThreshold",
            "threshold": 0.05,
        },
        "metric_values": [
            {"at": "2026-12-04T17:57:00+00:00", "value": 0.01},
            {"at": "2026-12-04T17:58:00+00:00", "value": 0.04},
            {"at": "2026-12-04T17:59:00+00:00", "value": 0.12},
        ],
        "production": {"model_version": "v0002", "since": "2026-12-04T12:00:00+00:00"},
        "last_known_good": {"model_version": "v0001"},
        "changes": {
            "against": "v0001",
            "record_count": [120, 180],
            "drops_added": [{"drop_id": "drop-gadget-7", "records": 60, "dataset": "gadget"}],
            "hyperparameters": [{"name": "learning_rate", "a": "0.0002", "b": "0.001"}],
            "scores": [
                {
                    "suite": "company_faq",
                    "metric": "acc",
                    "a": 0.8,
                    "b": 0.7,
                    "diff": -0.1,
                    "ci_low": -0.18,
                    "ci_high": -0.02,
                    "paired": True,
                }
            ],
            "gate": {
                "approved": True,
                "summary": "company_faq above its floor",
                "reasons": ["company_faq 0.700 >= floor 0.500"],
            },
        },
        "automatic_actions": [
            {"at": opened, "action": "rollback", "text": "rolled back v0002 → v0001"}
        ],
        "timeline": [
            {"at": opened, "event": "opened", "text": "quality-empty fired", "by": "platform"},
            {"at": opened, "event": "rolled_back", "text": "v0002 → v0001", "by": "platform"},
        ],
        **fields,
    }
    aws.table(platform.incidents_table).put_item(Item=dynamodb_value(item))


def incident(platform: Platform, incident_id: str = INCIDENT) -> Any:  # noqa: F811
    return store.get_incident(platform.incidents_table, incident_id)


def audit_records(platform: Platform, action: str) -> list[audit.AuditRecord]:  # noqa: F811
    return audit.list_records(platform.audit_table, action=action)


def flash_of(page: str) -> str:
    found = re.search(r'data-testid="flash"[^>]*>([^<]*)<', page)
    return found.group(1) if found else ""


def test_a_viewer_sees_the_list_newest_first_with_what_was_done(
    app_client: TestClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    put_incident(platform, "inc-old", status="resolved", minutes_ago=90, alarm_name="old-alarm")
    put_incident(platform, INCIDENT)
    sign_in(app_client, "viewer")

    page = app_client.get("/incidents").text

    listed = re.findall(r'data-testid="incident-row"><td><a href="/incidents/([^"]+)"', page)
    assert listed == [INCIDENT, "inc-old"]
    rows = page.split('data-testid="incident-row"')[1:]
    assert 'class="badge status-open"' in rows[0] and "tuneloop-dev-quality-empty" in rows[0]
    assert 'href="/models/v0002"' in rows[0] and "rolled back v0002 → v0001" in rows[0]
    assert 'class="badge status-resolved"' in rows[1]
    assert '<a href="/incidents" class="active">Incidents</a>' in page


def test_the_list_filters_by_status_and_says_when_there_is_none(
    app_client: TestClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    sign_in(app_client, "viewer")
    assert 'data-testid="no-incidents"' in app_client.get("/incidents").text
    put_incident(platform, "inc-done", status="resolved", minutes_ago=5)
    put_incident(platform, INCIDENT)

    open_only = app_client.get("/incidents?status=open").text
    resolved = app_client.get("/incidents?status=resolved").text
    acknowledged = app_client.get("/incidents?status=acknowledged").text

    assert INCIDENT in open_only and "inc-done" not in open_only
    assert "inc-done" in resolved and INCIDENT not in resolved
    assert "No acknowledged incidents." in acknowledged
    assert app_client.get("/incidents?status=closed").status_code == 400


def test_a_viewer_sees_the_whole_incident_and_no_controls(
    app_client: TestClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    put_incident(platform)
    sign_in(app_client, "viewer")

    response = app_client.get(f"/incidents/{INCIDENT}")

    assert response.status_code == 200
    page = response.text
    assert page.count("<h1") == 1
    assert "More than 5% of answers are empty." in page and "Threshold Crossed" in page
    assert '<code data-testid="runbook">docs/runbooks/quality-empty.md</code>' in page
    assert "TuneLoop/Quality/EmptyRate" in page and "<polyline" in page  # the metric as SVG
    assert "threshold 0.05" in page  # its threshold line's legend
    assert 'href="/models/v0002"' in page and "since 2026-12-04T12:00:00+00:00" in page
    assert 'href="/models/compare?a=v0001&b=v0002"' in page  # last-known-good vs fired
    assert 'href="/data/drop-gadget-7"' in page and "<td>60</td>" in page
    assert "learning_rate" in page and "0.0002" in page and "0.001" in page
    assert "-0.100" in page and "[-0.180, -0.020]" in page  # score delta with its CI
    assert "Approved: company_faq above its floor" in page
    assert "rolled back v0002 → v0001" in page and "quality-empty fired" in page
    assert 'data-testid="acknowledge-form"' not in page
    assert 'data-testid="resolve-form"' not in page


def test_a_viewer_cannot_acknowledge_or_resolve(
    app_client: TestClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    put_incident(platform)
    sign_in(app_client, "viewer")
    csrf = token(app_client, f"/incidents/{INCIDENT}")

    acked = app_client.post(f"/incidents/{INCIDENT}/acknowledge", data={"csrf_token": csrf})
    resolved = app_client.post(
        f"/incidents/{INCIDENT}/resolve", data={"csrf_token": csrf, "root_cause": "bad data"}
    )

    assert acked.status_code == 403 and resolved.status_code == 403
    assert incident(platform).status == "open"
    assert audit_records(platform, "incident_acknowledged") == []
    assert audit_records(platform, "incident_resolved") == []


def test_an_operator_acknowledges_then_resolves_and_both_are_audited(
    app_client: TestClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    put_incident(platform)
    sign_in(app_client, "operator")
    page = app_client.get(f"/incidents/{INCIDENT}").text
    assert 'data-testid="acknowledge-form"' in page and 'data-testid="resolve-form"' in page
    csrf = token(app_client, f"/incidents/{INCIDENT}")

    acked = app_client.post(
        f"/incidents/{INCIDENT}/acknowledge", data={"csrf_token": csrf, "note": "looking"}
    )

    assert flash_of(acked.text) == f"Incident {INCIDENT} acknowledged."
    assert 'data-testid="incident-status">acknowledged<' in acked.text
    assert 'data-testid="acknowledge-form"' not in acked.text  # once is enough
    after_ack = incident(platform)
    assert after_ack.status == "acknowledged"
    assert after_ack.acknowledged_by == "operator (operator)"
    (acked_record,) = audit_records(platform, "incident_acknowledged")
    assert acked_record.actor == "operator (operator)" and acked_record.target == INCIDENT
    assert acked_record.source == "console" and acked_record.after["note"] == "looking"

    resolved = app_client.post(
        f"/incidents/{INCIDENT}/resolve",
        data={"csrf_token": csrf, "root_cause": "an empty-answer drop reached training"},
    )

    assert flash_of(resolved.text) == f"Incident {INCIDENT} resolved."
    assert 'data-testid="incident-status">resolved<' in resolved.text
    assert "an empty-answer drop reached training</strong>" in resolved.text
    assert 'data-testid="resolve-form"' not in resolved.text
    after = incident(platform)
    assert after.status == "resolved" and after.resolved_by == "operator (operator)"
    assert after.root_cause == "an empty-answer drop reached training"
    (resolved_record,) = audit_records(platform, "incident_resolved")
    assert resolved_record.actor == "operator (operator)"
    assert resolved_record.before == {"status": "acknowledged"}
    assert resolved_record.after["root_cause"] == "an empty-answer drop reached training"


def test_resolving_without_a_root_cause_says_so_and_changes_nothing(
    app_client: TestClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    put_incident(platform)
    sign_in(app_client, "operator")
    csrf = token(app_client, f"/incidents/{INCIDENT}")

    response = app_client.post(
        f"/incidents/{INCIDENT}/resolve", data={"csrf_token": csrf, "root_cause": "  \n "}
    )

    assert response.status_code == 422
    error = response.text.split('data-testid="resolve-error"', 1)[1].split("</p>", 1)[0]
    assert "say what caused the incident" in error
    unchanged = incident(platform)
    assert unchanged.status == "open" and unchanged.root_cause == ""
    assert len(unchanged.timeline) == 2
    assert audit_records(platform, "incident_resolved") == []


def test_changing_a_resolved_incident_is_refused_with_the_reason(
    app_client: TestClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    put_incident(platform, status="resolved", root_cause="known", resolved_by="alice (operator)")
    sign_in(app_client, "operator")
    csrf = token(app_client, f"/incidents/{INCIDENT}")

    again = app_client.post(
        f"/incidents/{INCIDENT}/resolve", data={"csrf_token": csrf, "root_cause": "other"}
    )

    assert "Not resolved:" in flash_of(again.text) and "is resolved" in flash_of(again.text)
    assert incident(platform).root_cause == "known"
    assert audit_records(platform, "incident_resolved") == []


def test_an_unknown_incident_is_the_not_found_page(
    app_client: TestClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    sign_in(app_client, "operator")
    csrf = token(app_client, "/incidents")

    shown = app_client.get("/incidents/inc-nope")
    acked = app_client.post("/incidents/inc-nope/acknowledge", data={"csrf_token": csrf})

    assert shown.status_code == 404 and "Not found" in shown.text and "inc-nope" in shown.text
    assert acked.status_code == 404
    assert audit_records(platform, "incident_acknowledged") == []
    assert aws.table(platform.incidents_table).scan()["Items"] == []  # nothing created


def test_the_dashboard_counts_the_open_incidents(
    app_client: TestClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    sign_in(app_client, "viewer")
    assert "No open incidents" in app_client.get("/").text
    put_incident(platform, "inc-a")
    put_incident(platform, "inc-b", minutes_ago=1)
    put_incident(platform, "inc-c", status="resolved", minutes_ago=2)

    page = app_client.get("/").text

    count = page.split('data-testid="open-incidents"', 1)[1].split("</p>", 1)[0]
    assert 'href="/incidents?status=open"' in count and "2 open incidents" in count
