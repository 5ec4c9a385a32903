"""Redaction: each type of personal data, the look-alikes that must stay, the corpus figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tuneloop.ingest.model import Content, Message
from tuneloop.ingest.processing import redact_content
from tuneloop.ingest.redaction import (
    REGISTRY,
    ComprehendRedactor,
    Finding,
    all_redactors,
    redact,
    redactors_named,
    register,
)
from tuneloop.ingest.redaction.checks import iban_valid, luhn_valid
from tuneloop.ingest.redaction.evaluation import load_corpus, score

CORPUS_DIR = Path(__file__).resolve().parents[1] / "data" / "pii"
REDACTORS = all_redactors()


def redacted(text: str) -> str:
    return redact(text, REDACTORS).text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail anna.schmidt+orders@mail.example.org now", "Mail <EMAIL> now"),
        ("Call +44 20 7946 0958 today", "Call <PHONE> today"),
        ("Call +49 30 12345678.", "Call <PHONE>."),
        ("US office: (415) 555-0132, fax 415.555.0199", "US office: <PHONE>, fax <PHONE>"),
        ("dial +1 415 555 0132", "dial <PHONE>"),
        ("Visa 4111 1111 1111 1111 was charged", "Visa <CREDIT_CARD> was charged"),
        ("Amex 3782-822463-10005", "Amex <CREDIT_CARD>"),
        ("refund to GB82 WEST 1234 5698 7654 32 please", "refund to <IBAN> please"),
        ("refund to DE89370400440532013000.", "refund to <IBAN>."),
        ("from 192.168.10.42:8080", "from <IPV4>:8080"),
        ("from 2001:db8::8a2e:370:7334 and fe80::1", "from <IPV6> and <IPV6>"),
        ("SSN 078-05-1120 on file", "SSN <SSN> on file"),
        ("key AKIAIOSFODNN7EXAMPLE leaked", "key <AWS_ACCESS_KEY_ID> leaked"),
        (
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key=<AWS_SECRET_KEY>",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAbC+/=\n-----END RSA PRIVATE KEY----- ok",
            "<PRIVATE_KEY> ok",
        ),
        (
            "db: postgres://app:s3cr3t!@db.example.com:5432/x",
            "db: postgres://app:<PASSWORD>@db.example.com:5432/x",
        ),
    ],
)
def test_each_type_becomes_its_placeholder(text: str, expected: str) -> None:
    assert redacted(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Order #4111111111111112 has shipped.",  # 16 digits failing Luhn
        "Order 1234567890123456 is late.",  # not a card prefix, fails Luhn anyway
        "Due 2024-03-15, delivered 15/03/2024.",
        "Upgrade to version 1.2.3.4 or v10.0.0.1; firmware 4.2.0.12.",
        "ISBN 978-3-16-148410-0 and 9780306406157.",
        "Logged at 2025-01-02T10:30:00Z, epoch 1710498600123.",
        "Request 123e4567-e89b-12d3-a456-426614174000 failed.",
        "commit da39a3ee5e6b4b0d3255bfef95601890afd80709 fixed it.",
        "Device 00:1a:2b:3c:4d:5e at 10:30:00.",
        "Ship to IL 62704-1234, ticket 555-0199.",
        "IBAN GB82 WEST 1234 5698 7654 33 has a wrong check digit.",
        "Invalid SSN 000-12-3456 and 666-12-3456.",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert redacted(text) == text


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82WEST12345698765433")


def test_counts_per_type_and_the_password_wins_over_the_email_it_contains() -> None:
    result = redact(
        "ftp://bob:pa55@files.example.com and bob@example.com, ann@example.com", REDACTORS
    )
    assert result.text == "ftp://bob:<PASSWORD>@files.example.com and <EMAIL>, <EMAIL>"
    assert result.counts == {"PASSWORD": 1, "EMAIL": 2}


def test_chat_turns_are_redacted_one_by_one() -> None:
    content = Content(
        messages=(
            Message("user", "I am at 10.0.0.7, mail me at li@test.io"),
            Message("assistant", "Noted li@test.io."),
        )
    )
    result, counts = redact_content(content, REDACTORS)
    assert [m.content for m in result.messages or ()] == [
        "I am at <IPV4>, mail me at <EMAIL>",
        "Noted <EMAIL>.",
    ]
    assert counts == {"IPV4": 1, "EMAIL": 2}


class EmployeeIds:
    name = "employee_id"

    def find(self, text: str) -> list[Finding]:
        start = text.find("EMP-")
        return [] if start < 0 else [Finding(start, start + 10, "EMPLOYEE_ID", 10)]


def test_the_registry_takes_custom_redactors_and_rejects_unknown_names() -> None:
    register(EmployeeIds())
    try:
        chosen = redactors_named(["employee_id", "email"])
        assert redact("EMP-123456 is a@b.co", chosen).text == "<EMPLOYEE_ID> is <EMAIL>"
    finally:
        del REGISTRY["employee_id"]
    with pytest.raises(KeyError, match=r"unknown redactor 'nope'.*email"):
        redactors_named(["nope"])


class FakeComprehend:
    """Answers like DetectPiiEntities, from a table of (substring, type, score)."""

    def __init__(self, entities: list[tuple[str, str, float]]) -> None:
        self.entities = entities
        self.calls: list[dict[str, Any]] = []

    def detect_pii_entities(self, *, Text: str, LanguageCode: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append({"Text": Text, "LanguageCode": LanguageCode})
        found = []
        for value, kind, confidence in self.entities:
            start = Text.find(value)
            if start >= 0:
                found.append(
                    {
                        "Type": kind,
                        "Score": confidence,
                        "BeginOffset": start,
                        "EndOffset": start + len(value),
                    }
                )
        return {"Entities": found}


def test_comprehend_redactor_keeps_chosen_types_above_the_score() -> None:
    client = FakeComprehend(
        [
            ("Maria Rossi", "NAME", 0.99),
            ("12 Via Roma, Milano", "ADDRESS", 0.93),
            ("Tuesday", "DATE_TIME", 0.99),  # not a chosen type
            ("Luigi", "NAME", 0.4),  # below the score
        ]
    )
    text = "Maria Rossi lives at 12 Via Roma, Milano, says Luigi on Tuesday."
    result = redact(text, [ComprehendRedactor(client), *REDACTORS])
    assert result.text == "<NAME> lives at <ADDRESS>, says Luigi on Tuesday."
    assert result.counts == {"NAME": 1, "ADDRESS": 1}
    assert client.calls == [{"Text": text, "LanguageCode": "en"}]


def test_comprehend_offsets_are_shifted_for_long_texts_sent_in_chunks() -> None:
    from tuneloop.ingest.redaction.comprehend import MAX_CHUNK_CHARS

    client = FakeComprehend([("Kenji Tanaka", "NAME", 0.95)])
    text = "x" * MAX_CHUNK_CHARS + " Kenji Tanaka"
    result = redact(text, [ComprehendRedactor(client)])
    assert result.text.endswith(" <NAME>") and len(client.calls) == 2


def test_comprehend_is_opt_in_and_calls_the_service_through_the_aws_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto import mock_aws

    from tuneloop import aws
    from tuneloop.ingest.settings import DEFAULT_SETTINGS

    # Not among the defaults (it costs a request per text and an IAM grant)...
    assert "comprehend" not in DEFAULT_SETTINGS.redactors
    assert not any(isinstance(r, ComprehendRedactor) for r in all_redactors())
    # ...but a deployment can name it. moto answers DetectPiiEntities with a fixed NAME
    # entity at offsets 50-58, so the text puts a name there.
    text = "The ticket about the broken heater was sent in by Jane Doe, mail jd@example.com"
    assert text[50:58] == "Jane Doe"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset()  # clients are cached per region and endpoint
    with mock_aws():
        chosen = redactors_named(["comprehend", "email"])
        result = redact(text, chosen)
    aws.reset()
    assert isinstance(chosen[0], ComprehendRedactor)
    assert result.text.endswith("sent in by <NAME>, mail <EMAIL>")
    assert result.counts == {"NAME": 1, "EMAIL": 1}


def test_comprehend_entities_outside_the_text_are_ignored() -> None:
    client = FakeComprehend([])
    client.detect_pii_entities = lambda **_: {  # type: ignore[method-assign]
        "Entities": [{"Type": "NAME", "Score": 0.99, "BeginOffset": 5, "EndOffset": 90}]
    }
    assert redact("short text", [ComprehendRedactor(client)]).text == "short text"


def test_the_corpus_is_what_its_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS_DIR / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.corpus_text() == (CORPUS_DIR / "corpus.jsonl").read_text(encoding="utf-8")


def test_precision_and_recall_per_type_on_the_labelled_corpus() -> None:
    rows = load_corpus(CORPUS_DIR / "corpus.jsonl")
    labelled = [span for row in rows for span in row["spans"]]
    assert len(labelled) >= 500
    assert sum(1 for row in rows if row["negatives"] and not row["spans"]) >= 100
    scores = score(rows, REDACTORS)
    expected_types = {
        "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IPV4", "IPV6", "SSN",
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_KEY", "PRIVATE_KEY", "PASSWORD",
    }  # fmt: skip
    assert set(scores) == expected_types
    for kind, result in scores.items():
        assert result.true_positives >= 30, kind
        assert result.precision >= 0.95, (kind, result)
        assert result.recall >= 0.95, (kind, result)
