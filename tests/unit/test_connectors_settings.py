"""Connector declarations: valid ones round-trip, bad ones fail naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tuneloop.connectors.settings import (
    ConnectorConfigError,
    connector_from_dict,
    duplicate_name_problems,
    parse_connectors,
)

SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tuneloop/db-AbC123"


def sql_connector(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "tickets",
        "kind": "sql",
        "schedule": "rate(1 hour)",
        "dataset": "support",
        "secret_arn": SECRET,
        "sql": {
            "engine": "postgresql",
            "host": "db.internal",
            "database": "helpdesk",
            "table": "tickets",
            "fields": {"text": "body"},
            "watermark_column": "updated_at",
            "key_column": "id",
        },
    }
    for key, value in changes.items():
        if key.startswith("sql."):
            body["sql"][key.removeprefix("sql.")] = value
        else:
            body[key] = value
    return body


def http_connector(**http: Any) -> dict[str, Any]:
    return {
        "name": "notes",
        "kind": "http",
        "schedule": "cron(0 3 * * ? *)",
        "dataset": "notes",
        "tags": ["crm"],
        "http": {"url": "https://api.example.com/notes", **http},
    }


def test_a_valid_declaration_round_trips_through_json() -> None:
    settings = connector_from_dict(sql_connector())
    again = connector_from_dict(json.loads(settings.to_json()))
    assert again == settings
    assert settings.state_key == "connector#tickets" and settings.uses_postgresql
    http = connector_from_dict(http_connector(pagination="cursor"))
    assert connector_from_dict(json.loads(http.to_json())) == http
    assert http.tags == ("crm",)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Bad_Name"}, "connectors[0].name must be 1-40 lower-case"),
        ({"kind": "ftp"}, "connectors[0].kind must be one of"),
        ({"schedule": "every hour"}, "connectors[0].schedule must be rate(...)"),
        ({"secret_arn": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}, "secret_arn must be"),
        ({"secret_arn": ""}, "connectors[0].secret_arn is required for engine 'postgresql'"),
        ({"sql.table": "tickets; DROP TABLE x"}, "connectors[0].sql.table must be an SQL"),
        ({"sql.fields": {"text": "body text"}}, "connectors[0].sql.fields.text must be an SQL"),
        ({"sql.fields": {"author": "author"}}, "connectors[0].sql.fields.author must be text,"),
        ({"sql.engine": "oracle"}, "connectors[0].sql.engine must be one of"),
        ({"sql.host": ""}, "connectors[0].sql.host is required"),
        ({"sql.sslmode": "prefer"}, "connectors[0].sql.sslmode must be one of"),
        ({"sql.page_size": 0}, "connectors[0].sql.page_size must be > 0"),
        ({"rows_per_object": -1}, "connectors[0].rows_per_object must be > 0"),
        ({"subnet_ids": ["subnet-0123abcd"]}, "subnet_ids and security_group_ids must be given"),
        (
            {"security_group_ids": ["group"], "subnet_ids": ["subnet-0123abcd"]},
            "security_group_ids",
        ),
    ],
)
def test_bad_sql_declarations_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConnectorConfigError) as raised:
        parse_connectors([sql_connector(**changes)])
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("http", "message"),
    [
        ({"url": "ftp://x"}, "connectors[0].http.url must be an http(s) URL"),
        ({"url": "http://api.example.com"}, "must use https"),
        ({"pagination": "scroll"}, "connectors[0].http.pagination must be one of"),
        ({"since_param": "since"}, "connectors[0].http.since_param needs watermark_field"),
        ({"max_retries": 50}, "connectors[0].http.max_retries must be in [0, 20]"),
        ({"auth_header": "Bad Header"}, "connectors[0].http.auth_header must be an HTTP header"),
    ],
)
def test_bad_http_declarations_name_the_field(http: dict[str, Any], message: str) -> None:
    with pytest.raises(ConnectorConfigError) as raised:
        parse_connectors([http_connector(**http)])
    assert message in str(raised.value)


def test_unknown_and_missing_fields_are_named() -> None:
    with pytest.raises(ConnectorConfigError, match=r"connectors\[0\]: unknown field\(s\) tabel"):
        parse_connectors([{**sql_connector(), "tabel": "x"}])
    body = sql_connector()
    del body["sql"]["watermark_column"]
    with pytest.raises(ConnectorConfigError, match=r"connectors\[0\].sql: missing.*watermark"):
        parse_connectors([body])
    with pytest.raises(ConnectorConfigError, match=r"connectors\[0\]\.sql is required"):
        parse_connectors([{k: v for k, v in sql_connector().items() if k != "sql"}])


def test_context_json_text_and_duplicates() -> None:
    parsed = parse_connectors(json.dumps([sql_connector(), http_connector()]))
    assert [c.name for c in parsed] == ["tickets", "notes"]
    with pytest.raises(ConnectorConfigError, match="invalid JSON"):
        parse_connectors("[{")
    with pytest.raises(ConnectorConfigError, match="must be a list"):
        parse_connectors({"name": "x"})
    twice = parse_connectors([sql_connector(), sql_connector()])
    assert duplicate_name_problems(twice) == [("connectors[1].name", "'tickets' is used twice")]
