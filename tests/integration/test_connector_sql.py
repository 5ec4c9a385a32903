"""SQL connector against a real PostgreSQL server and SQLite files, with moto for AWS.

Given a table and a stored watermark, when the connector runs, then exactly the rows after
(watermark, key) land as data drops, and the watermark moves only past written data.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.integration.connector_fixtures import ConnectorAws, aws_credentials, connector_aws
from tests.integration.connector_servers import PostgresServer, postgres_server
from tuneloop import aws
from tuneloop.connectors import ConnectorSettings, SqlSettings, run_connector
from tuneloop.connectors.sql import SqlConnectorError
from tuneloop.connectors.state import ConnectorBusyError, StateStore, WatermarkConflictError
from tuneloop.connectors.watermark import Position

__all__ = ["aws_credentials", "connector_aws", "postgres_server"]

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Source:
    """One ``tickets`` table (id, updated_at, body, author) in the engine under test."""

    engine: str
    settings: ConnectorSettings
    insert_rows: Any

    def moment(self, seconds: int) -> Any:
        value = START + dt.timedelta(seconds=seconds)
        return value if self.engine == "postgresql" else value.isoformat()

    def insert(self, *rows: tuple[int, int, str]) -> None:
        """(id, seconds after START, body) rows."""
        self.insert_rows([(i, self.moment(s), body, f"user{i}") for i, s, body in rows])

    def with_options(self, **changes: Any) -> ConnectorSettings:
        sql_changes = {k: v for k, v in changes.items() if k in SqlSettings.__dataclass_fields__}
        top = {k: v for k, v in changes.items() if k not in sql_changes}
        assert self.settings.sql is not None
        return replace(self.settings, sql=replace(self.settings.sql, **sql_changes), **top)


FIELDS = {"text": "body", "metadata.author": "author", "metadata.id": "id"}


def _connector(sql: SqlSettings, secret_arn: str = "") -> ConnectorSettings:
    return ConnectorSettings(
        name="tickets",
        kind="sql",
        schedule="rate(1 hour)",
        dataset="support",
        tags=("source:helpdesk",),
        secret_arn=secret_arn,
        rows_per_object=3,
        sql=sql,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def source(
    request: pytest.FixtureRequest, tmp_path: Path, connector_aws: ConnectorAws
) -> Iterator[Source]:
    if request.param == "sqlite":
        path = tmp_path / "source.db"
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TABLE tickets "
                "(id INTEGER PRIMARY KEY, updated_at TEXT, body TEXT, author TEXT)"
            )

        def insert_sqlite(rows: list[tuple[Any, ...]]) -> None:
            with sqlite3.connect(path) as db:
                db.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?)", rows)

        sql = SqlSettings(
            engine="sqlite",
            database=str(path),
            table="tickets",
            fields=FIELDS,
            watermark_column="updated_at",
            key_column="id",
            page_size=2,
        )
        yield Source("sqlite", _connector(sql), insert_sqlite)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    table = f"tickets_{uuid.uuid4().hex[:8]}"
    admin = server.connect()
    admin.run(
        f"CREATE TABLE {table} "
        "(id integer PRIMARY KEY, updated_at timestamptz, body text, author text)"
    )

    def insert_pg(rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            admin.run(
                f"INSERT INTO {table} VALUES (:id, :at, :body, :author)",
                id=row[0],
                at=row[1],
                body=row[2],
                author=row[3],
            )

    secret = connector_aws.create_secret(
        f"pg-{table}", json.dumps({"username": server.user, "password": server.password})
    )
    sql = SqlSettings(
        engine="postgresql",
        host=server.host,
        port=server.port,
        database=server.database,
        sslmode="disable",
        table=table,
        fields=FIELDS,
        watermark_column="updated_at",
        key_column="id",
        page_size=2,
    )
    try:
        yield Source("postgresql", _connector(sql, secret), insert_pg)
    finally:
        admin.run(f"DROP TABLE {table}")
        admin.close()


def run(
    source: Source, connector_aws: ConnectorAws, settings: ConnectorSettings | None = None
) -> Any:
    return run_connector(
        settings or source.settings,
        raw_bucket=connector_aws.raw_bucket,
        control_table=connector_aws.control_table,
    )


def texts(connector_aws: ConnectorAws) -> list[str]:
    return [record["text"] for record in connector_aws.all_records()]


def test_first_run_pulls_every_row_into_objects_with_manifests(
    source: Source, connector_aws: ConnectorAws
) -> None:
    # Given 7 rows, pages of 2 and 3 rows per object
    source.insert(*[(i, i, f"ticket {i}") for i in range(1, 8)])
    # When the connector runs
    result = run(source, connector_aws)
    # Then 3 objects hold all 7 rows in watermark order, mapped to record fields
    assert result.rows == 7
    data = connector_aws.data_keys()
    assert len(data) == 3 and data == sorted(result.objects)
    assert all(k.startswith("drops/support/connectors/tickets/") for k in data)
    assert [len(connector_aws.records(k)) for k in data] == [3, 3, 1]
    assert texts(connector_aws) == [f"ticket {i}" for i in range(1, 8)]
    first = connector_aws.records(data[0])[0]
    assert first["metadata"] == {"author": "user1", "id": 1}
    # And every object has its manifest beside it
    for key in data:
        manifest = aws.s3().get_object(Bucket=connector_aws.raw_bucket, Key=f"{key}.manifest.json")
        body = json.loads(manifest["Body"].read())
        assert body == {"dataset": "support", "source": "tickets", "tags": ["source:helpdesk"]}
    # And the state holds the last row's position and the run's counts
    state = connector_aws.state("tickets")
    assert state["watermark_key"] == {"type": "int", "value": "7"}
    assert state["rows_pulled"] == 7 and state["total_rows"] == 7
    assert state["last_status"] == "ok" and "lease_id" not in state


def test_second_run_pulls_only_new_rows_and_ties_on_the_watermark(
    source: Source, connector_aws: ConnectorAws
) -> None:
    # Given five rows sharing one watermark value (a page boundary splits them) and one more
    source.insert(*[(i, 10, f"same time {i}") for i in range(1, 6)], (6, 5, "earlier"))
    run(source, connector_aws)
    assert sorted(texts(connector_aws)) == sorted(
        ["earlier", *[f"same time {i}" for i in range(1, 6)]]
    )
    # When rows arrive at the same watermark (higher key) and later, and the connector runs again
    source.insert((7, 10, "late tie"), (8, 11, "newer"))
    second = run(source, connector_aws)
    # Then the second run pulls exactly the two new rows
    assert second.rows == 2
    assert [r["text"] for k in second.objects for r in connector_aws.records(k)] == [
        "late tie",
        "newer",
    ]
    # And a third run finds nothing and writes nothing
    third = run(source, connector_aws)
    assert third.rows == 0 and third.objects == []
    assert sorted(texts(connector_aws)).count("late tie") == 1


def test_max_rows_per_run_stops_and_the_next_run_continues(
    source: Source, connector_aws: ConnectorAws
) -> None:
    source.insert(*[(i, i // 2, f"row {i}") for i in range(1, 10)])
    capped = source.with_options(max_rows_per_run=4)
    outcomes = [run(source, connector_aws, capped) for _ in range(3)]
    assert [(r.rows, r.complete) for r in outcomes] == [(4, False), (4, False), (1, True)]
    assert texts(connector_aws) == [f"row {i}" for i in range(1, 10)]


def test_a_passed_deadline_stops_between_pages_and_keeps_what_was_read(
    source: Source, connector_aws: ConnectorAws
) -> None:
    # Given 5 rows, pages of 2, and a deadline that has already passed
    source.insert(*[(i, i, f"row {i}") for i in range(1, 6)])
    late = run_connector(
        source.settings,
        raw_bucket=connector_aws.raw_bucket,
        control_table=connector_aws.control_table,
        deadline=time.monotonic() - 1,
    )
    # Then the run read one page, wrote it and says rows remain
    assert (late.rows, late.complete) == (2, False)
    assert texts(connector_aws) == ["row 1", "row 2"]
    # And the next run goes on from there
    rest = run(source, connector_aws)
    assert (rest.rows, rest.complete) == (3, True)
    assert texts(connector_aws) == [f"row {i}" for i in range(1, 6)]


def test_watermark_not_advanced_past_a_failed_write(
    source: Source, connector_aws: ConnectorAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 7 rows and an S3 that fails on the second data object
    source.insert(*[(i, i, f"ticket {i}") for i in range(1, 8)])
    s3 = aws.s3()
    real_put = s3.put_object
    data_puts = []

    def failing_put(**kwargs: Any) -> Any:
        if kwargs["Key"].endswith(".jsonl"):
            data_puts.append(kwargs["Key"])
            if len(data_puts) == 2:
                raise OSError("simulated S3 outage")
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", failing_put)
    # When the connector runs, it fails
    with pytest.raises(OSError, match="simulated S3 outage"):
        run(source, connector_aws)
    # Then the watermark covers only the object that was written, the error is recorded
    state = connector_aws.state("tickets")
    assert state["watermark_key"] == {"type": "int", "value": "3"}
    assert state["last_status"] == "failed" and "simulated S3 outage" in state["last_error"]
    assert "lease_id" not in state
    # And the next run (S3 back) pulls the rest, so every row lands exactly once
    monkeypatch.setattr(s3, "put_object", real_put)
    assert run(source, connector_aws).rows == 4
    assert sorted(texts(connector_aws)) == sorted(f"ticket {i}" for i in range(1, 8))
    assert "last_error" not in connector_aws.state("tickets")


def test_overlapping_runs_cannot_double_pull_or_move_the_watermark_back(
    source: Source, connector_aws: ConnectorAws
) -> None:
    source.insert((1, 1, "one"))
    store = StateStore(connector_aws.control_table, "tickets")
    now = dt.datetime.now(dt.UTC)
    # Given a run that holds the lease
    stale = store.acquire("run-a", now=now, lease_seconds=600)
    # Then a second run pulls nothing and says why
    with pytest.raises(ConnectorBusyError, match="already running"):
        run(source, connector_aws)
    assert connector_aws.data_keys() == []
    # When the lease expires and another run takes over and advances
    later = now + dt.timedelta(seconds=601)
    fresh = store.acquire("run-b", now=later, lease_seconds=600)
    store.advance("run-b", expected_version=fresh.version, position=Position(5, 5), rows=1)
    # Then the stale run cannot move the watermark (back or forward)
    with pytest.raises(WatermarkConflictError, match="changed under run 'run-a'"):
        store.advance("run-a", expected_version=stale.version, position=Position(2, 2), rows=1)
    assert connector_aws.state("tickets")["watermark"] == {"type": "int", "value": "5"}


def test_unknown_table_fails_with_a_clear_error(
    source: Source, connector_aws: ConnectorAws
) -> None:
    missing = source.with_options(table="no_such_table")
    with pytest.raises(SqlConnectorError, match="query on 'no_such_table' failed"):
        run(source, connector_aws, missing)
    state = connector_aws.state("tickets")
    assert state["last_status"] == "failed" and "no_such_table" in state["last_error"]


def test_postgres_wrong_password_is_a_clear_error_without_the_password(
    postgres_server: PostgresServer, connector_aws: ConnectorAws
) -> None:
    secret = connector_aws.create_secret(
        "pg-wrong", json.dumps({"username": postgres_server.user, "password": "not-the-password"})
    )
    settings = _connector(
        SqlSettings(
            engine="postgresql",
            host=postgres_server.host,
            port=postgres_server.port,
            database=postgres_server.database,
            sslmode="disable",
            table="tickets",
            fields={"text": "body"},
            watermark_column="updated_at",
            key_column="id",
        ),
        secret,
    )
    with pytest.raises(SqlConnectorError, match="cannot connect to PostgreSQL") as raised:
        run_connector(
            settings, raw_bucket=connector_aws.raw_bucket, control_table=connector_aws.control_table
        )
    assert "not-the-password" not in str(raised.value)
    assert "not-the-password" not in connector_aws.state("tickets")["last_error"]
