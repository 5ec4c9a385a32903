"""The usage report: per role, the grants a run exercised and those it never did."""

from __future__ import annotations

import json
import threading

from iam_fakes import ACCOUNT, REGION, ROLE, ROLE_CALLER, FakeStore, allow, call

from tuneloop.local.iam import authorize
from tuneloop.local.iam.usage import Recorder, as_json, as_text

TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Records"


def _store() -> FakeStore:
    return FakeStore().grant(
        allow(["dynamodb:GetItem", "dynamodb:PutItem"], TABLE, Sid="Table"),
        allow("sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:notify"),
    )


def test_report_splits_exercised_and_never_exercised_grants() -> None:
    # Given a role with three grants, of which a run uses one (twice) and is denied another
    store, recorder = _store(), Recorder()
    for request in (
        call("dynamodb", "GetItem", TableName="Records"),
        call("dynamodb", "GetItem", TableName="Records"),
        call("dynamodb", "Query", TableName="Records"),
    ):
        recorder.record(ROLE_CALLER, request, authorize(ROLE_CALLER, request, store))

    # When the report is made for the role
    (report,) = recorder.report(store, [ROLE])

    # Then GetItem is exercised on the table; PutItem and Publish never were
    assert [(g.action, g.resources, g.sid) for g in report.exercised] == [
        ("dynamodb:GetItem", (TABLE,), "Table")
    ]
    assert [g.action for g in report.never_exercised] == ["dynamodb:PutItem", "sns:Publish"]
    assert len(report.denied) == 1 and "dynamodb:Query" in report.denied[0]
    assert json.loads(as_json([report]))[0]["never_exercised"][1]["action"] == "sns:Publish"
    assert "unused sns:Publish" in as_text([report])


def test_unmodelled_operations_are_reported() -> None:
    # Given a call no rule models
    store, recorder = _store().grant(allow("dynamodb:*")), Recorder()
    request = call("dynamodb", "ListTables")
    recorder.record(ROLE_CALLER, request, authorize(ROLE_CALLER, request, store))

    # Then the report names it
    (report,) = recorder.report(store, [ROLE])
    assert report.unmodelled == ["dynamodb:ListTables"]


def test_recording_from_many_threads_loses_nothing() -> None:
    # Given decisions recorded from eight threads at once
    store, recorder = _store(), Recorder()
    request = call("dynamodb", "PutItem", TableName="Records")
    decisions = authorize(ROLE_CALLER, request, store)

    def work() -> None:
        for _ in range(500):
            recorder.record(ROLE_CALLER, request, decisions)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every decision is counted, and the grant is reported once
    (report,) = recorder.report(store, [ROLE])
    assert recorder.decisions_count() == 8 * 500 * len(decisions)
    assert [g.action for g in report.exercised] == ["dynamodb:PutItem"]
