"""Reading captured traffic from the capture layout (moto S3): window, paging, redaction."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tuneloop.ingest.redaction import all_redactors
from tuneloop.watch.capture import (
    hour_prefixes,
    key_time,
    list_capture_keys,
    parse_capture_line,
    read_window,
)
from tuneloop.watch.drift_check import run_drift_check

BUCKET = "curated"


def _line(prompt: str, answer: str, encoding: str = "JSON") -> str:
    def data(body: dict[str, Any]) -> str:
        text = json.dumps(body)
        return base64.b64encode(text.encode()).decode() if encoding == "BASE64" else text

    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "application/json",
                    "mode": "INPUT",
                    "data": data({"inputs": prompt, "parameters": {"max_new_tokens": 64}}),
                    "encoding": encoding,
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": data({"generated_text": answer}),
                    "encoding": encoding,
                },
            },
            "eventMetadata": {"eventId": "e1", "inferenceTime": "2026-12-03T18:00:00Z"},
            "eventVersion": "0",
        }
    )


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_hour_prefixes_cover_the_window() -> None:
    start = datetime(2026, 12, 3, 22, 30, tzinfo=UTC)
    end = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    assert hour_prefixes("ep", "AllTraffic", start, end) == [
        "capture/ep/AllTraffic/2026/12/03/22/",
        "capture/ep/AllTraffic/2026/12/03/23/",
        "capture/ep/AllTraffic/2026/12/04/00/",
    ]
    assert key_time("capture/ep/v/2026/12/03/22/29-59-999-u.jsonl") == datetime(
        2026, 12, 3, 22, 29, 59, 999000, tzinfo=UTC
    )
    assert key_time("capture/ep/v/2026/12/03/22/odd.jsonl") is None
    with pytest.raises(ValueError, match="empty"):
        hour_prefixes("ep", "AllTraffic", end, start)


def test_reads_only_the_window_pages_and_redacts(s3: Any) -> None:
    inside = "capture/ep/AllTraffic/2026/12/03/18"
    # More objects than one listing page (moto pages at 1000), so paging is exercised.
    for i in range(1001):
        s3.put_object(
            Bucket=BUCKET, Key=f"{inside}/00-{i // 1000:02d}-{i % 1000:03d}-a.jsonl", Body=b""
        )
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{inside}/05-00-000-b.jsonl",
        Body="\n".join(
            [
                _line("Mail me at jane.doe@example.com about my refund", "Sure."),
                _line("Where is my parcel?", "On its way.", encoding="BASE64"),
                "not json",
                _line("", "empty prompts are skipped"),
            ]
        ).encode(),
    )
    s3.put_object(
        Bucket=BUCKET,
        Key="capture/ep/AllTraffic/2026/12/03/20/x.jsonl",
        Body=_line("outside the window", "no").encode(),
    )
    s3.put_object(
        Bucket=BUCKET,
        Key="capture/other/AllTraffic/2026/12/03/18/y.jsonl",
        Body=_line("another endpoint", "no").encode(),
    )
    start = datetime(2026, 12, 3, 18, tzinfo=UTC)
    end = datetime(2026, 12, 3, 19, tzinfo=UTC)
    assert len(list(list_capture_keys(s3, BUCKET, "ep", "AllTraffic", start, end))) == 1002
    # A window starting mid-hour leaves out that hour's earlier files.
    later = datetime(2026, 12, 3, 18, 1, tzinfo=UTC)
    assert list(list_capture_keys(s3, BUCKET, "ep", "AllTraffic", later, end)) == [
        f"{inside}/05-00-000-b.jsonl"
    ]
    exchanges = read_window(s3, BUCKET, "ep", "AllTraffic", start, end, all_redactors())
    assert [e.prompt for e in exchanges] == [
        "Mail me at <EMAIL> about my refund",
        "Where is my parcel?",
    ]
    assert [e.prompt_redactions for e in exchanges] == [1, 0]
    assert exchanges[1].response == "On its way."
    limited = read_window(s3, BUCKET, "ep", "AllTraffic", start, end, all_redactors(), limit=1)
    assert len(limited) == 1


def test_a_list_shaped_answer_is_read() -> None:
    line = json.loads(_line("hi", "x"))
    line["captureData"]["endpointOutput"]["data"] = json.dumps([{"generated_text": "hello"}])
    exchange = parse_capture_line(json.dumps(line), all_redactors())
    assert exchange is not None and exchange.response == "hello"


def test_run_drift_check_over_captured_objects(s3: Any) -> None:
    reference = [f"How do I get a refund for order {i}?" for i in range(200)]
    shifted = [f"Wie verfolge ich mein Paket Nummer {i} bitte?" for i in range(200)]
    prefix = "capture/ep/AllTraffic/2026/12/03/18"
    body = "\n".join(_line(text, "ok") for text in shifted)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/00-00-000-a.jsonl", Body=body.encode())
    start = datetime(2026, 12, 3, 18, tzinfo=UTC)
    end = datetime(2026, 12, 3, 19, tzinfo=UTC)
    result = run_drift_check(s3, BUCKET, "ep", reference, start, end)
    assert result.drift_detected
    assert result.current_size == 200
    assert "language" in result.summary
    same = run_drift_check(s3, BUCKET, "ep", shifted, start, end)
    assert not same.drift_detected, same.summary
