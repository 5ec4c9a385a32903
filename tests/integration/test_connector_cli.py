"""``tuneloop connectors status|run`` against moto and a SQLite source."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.integration.connector_fixtures import ConnectorAws, aws_credentials, connector_aws
from tuneloop.cli import main

__all__ = ["aws_credentials", "connector_aws"]


@pytest.fixture
def declarations(
    tmp_path: Path, connector_aws: ConnectorAws, monkeypatch: pytest.MonkeyPatch
) -> Path:
    database = tmp_path / "wiki.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, edited INTEGER, body TEXT)")
        db.executemany("INSERT INTO pages VALUES (?, ?, ?)", [(1, 10, "a"), (2, 11, "b")])
    path = tmp_path / "connectors.json"
    path.write_text(
        json.dumps(
            [
                {
                    "name": "wiki",
                    "kind": "sql",
                    "schedule": "rate(1 day)",
                    "dataset": "wiki",
                    "sql": {
                        "engine": "sqlite",
                        "database": str(database),
                        "table": "pages",
                        "fields": {"text": "body"},
                        "watermark_column": "edited",
                        "key_column": "id",
                    },
                }
            ]
        )
    )
    monkeypatch.setenv("TUNELOOP_CONTROL_TABLE", connector_aws.control_table)
    monkeypatch.setenv("TUNELOOP_RAW_BUCKET", connector_aws.raw_bucket)
    return path


def test_run_then_status(
    declarations: Path, connector_aws: ConnectorAws, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no run yet
    assert main(["connectors", "status"]) == 0
    assert "no connector has run yet" in capsys.readouterr().out
    # When a connector runs by hand
    assert main(["connectors", "run", "wiki", "--file", str(declarations)]) == 0
    written = capsys.readouterr()
    assert written.out.strip().splitlines() == [
        f"s3://{connector_aws.raw_bucket}/{key}" for key in connector_aws.data_keys()
    ]
    assert "wiki: 2 rows in 1 objects; watermark 11" in written.err
    # Then status shows its outcome and watermark
    assert main(["connectors", "status"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("wiki: ok at ")
    assert "last run 2 rows in 1 objects, 2 in all; watermark 11 (key 2)" in line


def test_user_errors_are_one_line(
    declarations: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["connectors", "run", "nope", "--file", str(declarations)]) == 2
    assert "declares no connector 'nope' (it has: wiki)" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "x", "kind": "sql"}]))
    assert main(["connectors", "run", "x", "--file", str(bad)]) == 1
    assert "connectors[0]: missing field(s) dataset, schedule" in capsys.readouterr().err
