"""Drop objects: key layout, numbering, and the manifest written before its data."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest

from tests.integration.connector_fixtures import ConnectorAws, aws_credentials, connector_aws
from tuneloop import aws
from tuneloop.connectors import ConnectorSettings, HttpSettings
from tuneloop.connectors.drops import DropWriter

__all__ = ["aws_credentials", "connector_aws"]

SETTINGS = ConnectorSettings(
    name="crm-notes",
    kind="http",
    schedule="rate(1 hour)",
    dataset="crm",
    tags=("eu", "notes"),
    http=HttpSettings(url="https://crm.example.com/notes"),
)


def test_manifest_first_then_numbered_jsonl_objects(
    connector_aws: ConnectorAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = aws.s3()
    order: list[str] = []
    real_put = s3.put_object

    def recording_put(**kwargs: Any) -> Any:
        order.append(kwargs["Key"])
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", recording_put)
    started = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)
    writer = DropWriter(connector_aws.raw_bucket, SETTINGS, started)
    first = writer.write([{"text": "one"}, {"text": "two"}])
    second = writer.write([{"text": "three", "metadata": {"at": started}}])
    prefix = "drops/crm/connectors/crm-notes/20260304T050607.890123Z"
    assert (first, second) == (f"{prefix}-0001.jsonl", f"{prefix}-0002.jsonl")
    assert order == [
        f"{first}.manifest.json",
        first,
        f"{second}.manifest.json",
        second,
    ]
    manifest = aws.s3().get_object(Bucket=connector_aws.raw_bucket, Key=f"{first}.manifest.json")
    assert json.loads(manifest["Body"].read()) == {
        "dataset": "crm",
        "source": "crm-notes",
        "tags": ["eu", "notes"],
    }
    assert connector_aws.records(second) == [
        {"text": "three", "metadata": {"at": "2026-03-04T05:06:07.890123+00:00"}}
    ]
    assert all(
        re.fullmatch(r"drops/crm/connectors/crm-notes/[0-9T.Z]+-\d{4}\.jsonl", k)
        for k in (first, second)
    )
