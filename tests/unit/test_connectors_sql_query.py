"""The incremental query, watermark storage and field mapping (no database needed)."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest

from tuneloop.connectors.records import map_fields, to_jsonl
from tuneloop.connectors.settings import SqlSettings
from tuneloop.connectors.sql import build_query
from tuneloop.connectors.watermark import Position, WatermarkError, decode_value, encode_value

SETTINGS = SqlSettings(
    engine="sqlite",
    database="x.db",
    schema="app",
    table="Tickets",
    fields={"text": "body", "metadata.wm": "updated_at"},
    watermark_column="updated_at",
    key_column="id",
)


def test_first_query_takes_rows_with_a_watermark_in_order() -> None:
    query = build_query(SETTINGS, None, 50)
    assert query.text == (
        'SELECT "id", "updated_at", "body" FROM "app"."Tickets" '
        'WHERE "updated_at" IS NOT NULL ORDER BY "updated_at", "id" LIMIT :limit'
    )
    assert query.parameters == {"limit": 50}


def test_next_query_continues_after_the_watermark_and_key() -> None:
    query = build_query(SETTINGS, Position(7, 12), 10)
    assert 'WHERE "updated_at" > :wm OR ("updated_at" = :wm AND "id" > :key)' in query.text
    assert query.parameters == {"limit": 10, "wm": 7, "key": 12}


@pytest.mark.parametrize(
    "value",
    [
        3,
        2.5,
        decimal.Decimal("10.25"),
        "2026-01-01",
        dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        dt.date(2026, 1, 2),
    ],
)
def test_watermarks_keep_their_type(value: object) -> None:
    stored = encode_value(value)
    assert decode_value(json.loads(json.dumps(stored))) == value
    assert type(decode_value(stored)) is type(value)


def test_unsupported_watermarks_are_errors() -> None:
    with pytest.raises(WatermarkError, match="cannot use a bytes value"):
        encode_value(b"x")
    with pytest.raises(WatermarkError, match="unknown type"):
        decode_value({"type": "blob", "value": ""})


def test_position_orders_by_watermark_then_key() -> None:
    position = Position(5, 3)
    assert position.is_after(6, 0)
    assert position.is_after(5, 4)
    assert not position.is_after(5, 3)
    assert not position.is_after(4, 9)


def test_fields_map_into_nested_records_and_database_types_become_json() -> None:
    row = {"id": 1, "body": "hi", "updated_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}
    record = map_fields(row, SETTINGS.fields)
    assert record == {"text": "hi", "metadata": {"wm": row["updated_at"]}}
    line = to_jsonl([record, {"n": decimal.Decimal("2"), "b": b"\x00"}]).decode()
    assert line.splitlines() == [
        '{"text":"hi","metadata":{"wm":"2026-01-01T00:00:00+00:00"}}',
        '{"n":2,"b":"AA=="}',
    ]
