"""A connector's drops go through the one ingestion path: manifests skipped, records stored
under the connector's dataset with its source tag."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.integration.aws_fixtures import Platform, aws_credentials, platform
from tuneloop import aws
from tuneloop.connectors import ConnectorSettings, SqlSettings, run_connector
from tuneloop.ingest import DropObject, IngestTables, ingest_drop

__all__ = ["aws_credentials", "platform"]


def _drop_object(bucket: str, key: str) -> DropObject:
    head = aws.s3().head_object(Bucket=bucket, Key=key)
    return DropObject(bucket, key, head["ETag"].strip('"'), int(head["ContentLength"]))


def test_connector_drops_are_ingested_with_dataset_and_source(
    platform: Platform, tmp_path: Path
) -> None:
    # Given a SQLite table with four distinct answers
    path = tmp_path / "kb.db"
    answers = [
        "Reset your password from the account page and follow the emailed link.",
        "Invoices are issued on the first business day of each month.",
        "Exports run nightly and keep thirty days of history for every workspace.",
        "Two-factor authentication can be enforced by administrators for all users.",
    ]
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE kb (id INTEGER PRIMARY KEY, rev INTEGER, answer TEXT)")
        db.executemany(
            "INSERT INTO kb VALUES (?, ?, ?)", [(i, i, a) for i, a in enumerate(answers)]
        )
    settings = ConnectorSettings(
        name="kb",
        kind="sql",
        schedule="rate(1 day)",
        dataset="support",
        tags=("kb",),
        rows_per_object=3,
        sql=SqlSettings(
            engine="sqlite",
            database=str(path),
            table="kb",
            fields={"text": "answer", "metadata.rev": "rev"},
            watermark_column="rev",
            key_column="id",
        ),
    )
    # When the connector runs and ingestion processes every object it wrote
    result = run_connector(
        settings, raw_bucket=platform.raw_bucket, control_table=platform.control_table
    )
    tables = IngestTables(platform.records_table, platform.drops_table, platform.control_table)
    keys = aws.s3().list_objects_v2(Bucket=platform.raw_bucket, Prefix="drops/")["Contents"]
    outcomes = [ingest_drop(_drop_object(platform.raw_bucket, o["Key"]), tables) for o in keys]
    # Then the manifests are skipped as non-data and every row is stored once
    statuses = sorted(outcome.status for outcome in outcomes)
    assert statuses.count("skipped") == len(result.objects) == 2
    records: list[dict[str, Any]] = aws.table(platform.records_table).scan()["Items"]
    assert sorted(r["text"] for r in records) == sorted(answers)
    assert {r["dataset"] for r in records} == {"support"}
    tags = {tag for r in records for tag in r["features"]["tags"]}
    assert {"source:kb", "kb"} <= tags
