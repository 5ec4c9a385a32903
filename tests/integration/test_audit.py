"""The audit trail: append-only records, listed newest first with filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.aws_fixtures import ACCOUNT, Platform, aws_credentials, platform  # noqa: F401
from tuneloop import aws
from tuneloop.operations import audit
from tuneloop.operations.audit import Actor, AuditError

ALICE = Actor(name="alice (operator)", kind="user", source="console")
BOB = Actor(name="bob (admin)", kind="user", source="cli")


def test_append_writes_every_field(platform: Platform) -> None:  # noqa: F811
    # Given an operator's rollback
    record = audit.append(
        platform.audit_table,
        ALICE,
        "rollback",
        "endpoint tuneloop-endpoint",
        before={"model_version": "v0002", "score": 0.5},
        after={"model_version": "v0001"},
        request_id="req-1",
    )
    # Then the stored item holds who, what, target, before/after, when and the request id
    item: Any = aws.table(platform.audit_table).get_item(
        Key={"month": record.month, "event_id": record.event_id}
    )["Item"]
    assert record.event_id == f"{record.at}#req-1"
    assert record.month == record.at[:7]
    assert item["actor"] == "alice (operator)"
    assert item["actor_kind"] == "user"
    assert item["action"] == "rollback"
    assert item["target"] == "endpoint tuneloop-endpoint"
    assert item["before"]["model_version"] == "v0002"
    assert item["after"] == {"model_version": "v0001"}
    assert item["source"] == "console"
    assert audit.list_records(platform.audit_table)[0].before == {
        "model_version": "v0002",
        "score": 0.5,
    }


def test_a_record_cannot_be_overwritten(platform: Platform) -> None:  # noqa: F811
    at = datetime.now(UTC).isoformat()
    audit.append(
        platform.audit_table,
        ALICE,
        "freeze",
        "pipeline",
        before={},
        after={"frozen": True},
        request_id="same",
        at=at,
    )
    # When a second append reuses the event id
    with pytest.raises(AuditError, match="not overwritten"):
        audit.append(
            platform.audit_table,
            BOB,
            "unfreeze",
            "pipeline",
            before={},
            after={},
            request_id="same",
            at=at,
        )
    # Then the first record is unchanged
    (record,) = audit.list_records(platform.audit_table)
    assert (record.actor, record.action) == ("alice (operator)", "freeze")


def test_list_records_newest_first_with_filters(platform: Platform) -> None:  # noqa: F811
    audit.append(
        platform.audit_table,
        ALICE,
        "deploy",
        "v0001",
        before={},
        after={},
        at="2026-11-30T10:00:00+00:00",
    )
    audit.append(
        platform.audit_table,
        BOB,
        "freeze",
        "pipeline",
        before={},
        after={},
        at="2026-12-01T10:00:00+00:00",
    )
    audit.append(
        platform.audit_table,
        ALICE,
        "rollback",
        "v0002",
        before={},
        after={},
        at="2026-12-02T10:00:00+00:00",
    )
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    every = audit.list_records(platform.audit_table, now=now)
    assert [r.action for r in every] == ["rollback", "freeze", "deploy"]  # across months
    assert [r.action for r in audit.list_records(platform.audit_table, who="alice", now=now)] == [
        "rollback",
        "deploy",
    ]
    assert [
        r.target for r in audit.list_records(platform.audit_table, action="freeze", now=now)
    ] == ["pipeline"]
    assert [
        r.action for r in audit.list_records(platform.audit_table, target="v0001", now=now)
    ] == ["deploy"]
    assert len(audit.list_records(platform.audit_table, limit=2, now=now)) == 2
    # A month outside the window is not read
    assert audit.list_records(platform.audit_table, months=1, now=now)[-1].action == "freeze"


def test_unknown_action_and_bad_actor_are_refused(platform: Platform) -> None:  # noqa: F811
    with pytest.raises(AuditError, match="not one of"):
        audit.append(platform.audit_table, ALICE, "delete_everything", "x", before={}, after={})
    with pytest.raises(AuditError, match="kind"):
        Actor(name="x", kind="robot", source="cli")
    assert audit.list_records(platform.audit_table) == []


def test_actor_from_iam_is_the_caller_principal(platform: Platform) -> None:  # noqa: F811
    actor = Actor.from_iam("pipeline")
    assert actor.kind == "iam"
    assert actor.source == "pipeline"
    assert actor.name.startswith("arn:aws:") and ACCOUNT in actor.name
