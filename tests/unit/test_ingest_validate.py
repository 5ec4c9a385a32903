"""Validation and normalization: the content that is stored, and why a record is refused."""

from __future__ import annotations

import hashlib

import pytest

from tuneloop.ingest.model import Candidate, Entry, Message, Rejection
from tuneloop.ingest.normalize import normalize_text
from tuneloop.ingest.validate import MAX_RECORD_BYTES, validate_entry

FILE = "drops/default/a.jsonl"


def check(payload: dict[str, object], line: int = 7) -> Candidate | Rejection:
    return validate_entry(FILE, Entry(line=line, payload=payload, raw=str(payload)))


def test_normalize_composes_collapses_and_strips_controls() -> None:
    raw = "  Cafe\u0301\t\t au\u00a0lait\x00\r\n\r\n\r\n\r\nnext\u200b line \x07 "
    assert normalize_text(raw) == "Caf\u00e9 au lait\n\nnext line"


def test_text_record_is_normalized_and_keyed_by_sha256() -> None:
    result = check({"text": "  Hello\u00a0 world "})
    assert isinstance(result, Candidate)
    assert result.content.text == "Hello world"
    assert result.record_id == hashlib.sha256(b"Hello world").hexdigest()


def test_equal_looking_texts_share_a_record_id() -> None:
    first = check({"text": "Cafe\u0301  noir"})
    second = check({"text": "Caf\u00e9 noir\n"})
    assert isinstance(first, Candidate) and isinstance(second, Candidate)
    assert first.record_id == second.record_id


def test_messages_are_validated_and_normalized() -> None:
    result = check(
        {
            "messages": [
                {"role": " User", "content": "hi  there"},
                {"role": "assistant", "content": "hello"},
            ]
        }
    )
    assert isinstance(result, Candidate)
    assert result.content.messages == (Message("user", "hi there"), Message("assistant", "hello"))


def test_prompt_completion_becomes_a_user_assistant_exchange() -> None:
    result = check({"prompt": "Q?", "completion": "A."})
    assert isinstance(result, Candidate)
    assert result.content.training_line() == {
        "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    }


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        ({"body": "x"}, "missing_field", "text"),
        ({"text": 42}, "invalid_field", "text"),
        ({"text": " \x00\t "}, "empty_text", "text"),
        ({"messages": "hi"}, "invalid_field", "messages"),
        ({"messages": [{"role": "user"}]}, "missing_field", "messages[0].content"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "invalid_field", "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": ["x"]}]},
            "invalid_field",
            "messages[0].content",
        ),
        ({"prompt": "only a prompt"}, "missing_field", "completion"),
    ],
)
def test_rejections_name_file_line_and_field(
    payload: dict[str, object], reason: str, field: str
) -> None:
    result = check(payload, line=12)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field, result.line) == (reason, field, 12)
    assert result.message.startswith(f"{FILE}, line 12, field '{field}': ")


def test_a_custom_text_field_can_be_configured() -> None:
    result = validate_entry(FILE, Entry(1, {"body": "x"}, "raw"), text_field="body")
    assert isinstance(result, Candidate) and result.content.text == "x"


def test_oversized_records_are_rejected_before_they_reach_dynamodb() -> None:
    result = check({"text": "x" * (MAX_RECORD_BYTES + 1)})
    assert isinstance(result, Rejection)
    assert result.reason == "too_large"
    assert str(MAX_RECORD_BYTES) in result.message
