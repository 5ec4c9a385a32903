"""Incidents on the local platform, with permissions enforced: an event in the ingest
dead-letter queue trips its alarm (SQS's queue metric, which the local platform publishes as
SQS does), the Incidents function opens an incident (notification only: a person decides),
and an operator works it through the CLI: list, show, acknowledge, resolve with a root
cause, each change in the audit trail.

The event is put in the dead-letter queue directly, where SQS's redrive would put an event
that failed ingestion ``maxReceiveCount`` times.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from tests.e2e.loop_helpers import deployed_platform, wait_for, wait_for_incident
from tuneloop.cli import main
from tuneloop.local.platform import LocalPlatform
from tuneloop.operations.audit import list_records
from tuneloop.operations.names import PlatformNames
from tuneloop.stack_outputs import INGEST_DEAD_LETTER_QUEUE

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    work = tmp_path_factory.mktemp("e2e-incidents")
    with deployed_platform(work, {"stage": "local"}, enforce_permissions=True) as local:
        yield local


def test_a_dead_letter_opens_an_incident_that_an_operator_resolves(
    platform: LocalPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a drop event that failed ingestion and sits in the dead-letter queue
    assert platform.deployment is not None
    dlq_url = platform.deployment.output(INGEST_DEAD_LETTER_QUEUE)
    event = {"detail-type": "Object Created", "detail": {"object": {"key": "drops/x/a.jsonl"}}}
    boto3.client("sqs").send_message(QueueUrl=dlq_url, MessageBody=json.dumps(event))

    # When its alarm fires, an incident opens that says what it means and that people decide
    incident = wait_for_incident(
        "ApproximateNumberOfMessagesVisible", lambda i: bool(i.metric_values), timeout=120
    )
    assert incident.runbook == "docs/runbooks/ingest-dlq.md"
    assert incident.automatic_actions == () and incident.status == "open"
    assert "notification only" in incident.automatic_response
    assert max(v["value"] for v in incident.metric_values) >= 1
    (responder,) = [
        r for r in platform.emulator.permission_report() if "IncidentsFunctionRole" in r.role
    ]
    assert responder.denied == []

    # And an operator works it from the CLI
    key = incident.incident_id
    assert main(["incidents", "list", "--stage", "local", "--status", "open"]) == 0
    assert key in capsys.readouterr().out
    assert main(["incidents", "show", key, "--stage", "local"]) == 0
    shown = capsys.readouterr().out
    assert "runbook: docs/runbooks/ingest-dlq.md" in shown and "timeline:" in shown
    assert main(["incidents", "ack", key, "--stage", "local", "--note", "on it"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:  # resolving needs a root cause
        main(["incidents", "resolve", key, "--stage", "local"])
    assert usage.value.code == 2
    capsys.readouterr()
    cause = "a malformed drop; fixed upstream and redriven"
    assert main(["incidents", "resolve", key, "--stage", "local", "--root-cause", cause]) == 0
    capsys.readouterr()
    assert main(["incidents", "show", key, "--stage", "local", "--json"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["status"] == "resolved" and resolved["root_cause"] == cause
    # A resolved incident does not change again
    assert main(["incidents", "ack", key, "--stage", "local"]) == 3
    names = PlatformNames.for_stage("local")
    assert wait_for(lambda: len(list_records(names.audit_table, target=key)) == 2, timeout=10)
    actions = sorted(r.action for r in list_records(names.audit_table, target=key))
    assert actions == ["incident_acknowledged", "incident_resolved"]
    (record,) = list_records(names.audit_table, action="incident_resolved")
    assert record.after["root_cause"] == cause and record.source == "cli"
