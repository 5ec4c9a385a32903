"""The connector Lambda handler: env model, event check, a whole run from a SQLite file."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.connector.handler import Env, handler
from tests.integration.connector_fixtures import ConnectorAws, aws_credentials, connector_aws
from tuneloop.connectors import ConnectorSettings, SqlSettings
from tuneloop.envmodel import EnvError

__all__ = ["aws_credentials", "connector_aws"]


@dataclass(frozen=True)
class Context:
    function_name: str = "tuneloop-connector"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:connector"
    aws_request_id: str = "00000000-0000-0000-0000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def context() -> LambdaContext:
    return cast(LambdaContext, Context())


@pytest.fixture
def env(
    connector_aws: ConnectorAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ConnectorSettings:
    path = tmp_path / "faq.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE faq (id INTEGER PRIMARY KEY, version INTEGER, answer TEXT)")
        db.executemany(
            "INSERT INTO faq VALUES (?, ?, ?)", [(i, 1, f"answer {i}") for i in range(5)]
        )
    settings = ConnectorSettings(
        name="faq",
        kind="sql",
        schedule="rate(1 day)",
        dataset="faq",
        sql=SqlSettings(
            engine="sqlite",
            database=str(path),
            table="faq",
            fields={"text": "answer"},
            watermark_column="version",
            key_column="id",
        ),
    )
    monkeypatch.setenv("RAW_BUCKET", connector_aws.raw_bucket)
    monkeypatch.setenv("CONTROL_TABLE", connector_aws.control_table)
    monkeypatch.setenv("CONNECTOR", settings.to_json())
    return settings


def test_a_scheduled_event_runs_the_functions_connector(
    env: ConnectorSettings, connector_aws: ConnectorAws
) -> None:
    result: dict[str, Any] = handler({"connector": "faq"}, context())
    assert result["connector"] == "faq" and result["rows"] == 5
    assert result["watermark"] == "1"
    assert len(result["objects"]) == 1
    assert connector_aws.data_keys() == result["objects"]
    assert connector_aws.state("faq")["last_status"] == "ok"


def test_an_event_for_another_connector_is_refused(
    env: ConnectorSettings, connector_aws: ConnectorAws
) -> None:
    with pytest.raises(ValueError, match="event names connector 'tickets'"):
        handler({"connector": "tickets"}, context())
    assert connector_aws.data_keys() == []


def test_env_model_reads_exactly_the_contract_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNECTOR", raising=False)
    monkeypatch.setenv("RAW_BUCKET", "b")
    monkeypatch.setenv("CONTROL_TABLE", "t")
    with pytest.raises(EnvError, match="missing environment variables: CONNECTOR"):
        handler({}, context())
    assert {f.upper() for f in Env.__dataclass_fields__} == {
        "RAW_BUCKET",
        "CONTROL_TABLE",
        "CONNECTOR",
    }
