"""Captured endpoint traffic: list one window's capture files and read their exchanges.

SageMaker's own layout (docs/monitoring.md): ``capture/<endpoint>/<variant>/<yyyy>/<mm>/<dd>/
<hh>/<mm-ss-SSS>-<uuid>.jsonl``, one JSON line per invocation. Listing walks one hour prefix
at a time, so a window never scans the whole bucket. The prompt is redacted with the ingest
redactors before anything else sees it; the number of redactions is kept as a feature.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tuneloop.ingest.redaction import Redactor, redact

CAPTURE_PREFIX = "capture"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CapturedExchange:
    """One invocation, redacted: the prompt, the answer and how many redactions each had."""

    prompt: str
    response: str
    prompt_redactions: int
    response_redactions: int
    inference_time: str


def hour_prefixes(endpoint: str, variant: str, start: datetime, end: datetime) -> list[str]:
    """The hour prefixes that cover ``[start, end)`` (UTC), oldest first."""
    if end <= start:
        raise ValueError(f"capture window is empty: start {start} is not before end {end}")
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    prefixes = []
    while hour < end:
        prefixes.append(f"{CAPTURE_PREFIX}/{endpoint}/{variant}/{hour:%Y/%m/%d/%H}/")
        hour += timedelta(hours=1)
    return prefixes


def list_capture_keys(
    s3: Any, bucket: str, endpoint: str, variant: str, start: datetime, end: datetime
) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in hour_prefixes(endpoint, variant, start, end):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                written = key_time(key)
                # The first and last hour prefixes reach past the window's edges.
                if written is None or start <= written < end:
                    yield key


def key_time(key: str) -> datetime | None:
    """When a capture file was written, from ``<yyyy>/<mm>/<dd>/<hh>/<mm-ss-SSS>-...``."""
    parts = key.split("/")
    try:
        year, month, day, hour = (int(p) for p in parts[-5:-1])
        minute, second, millis = (int(p) for p in parts[-1].split("-")[:3])
        return datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=UTC)
    except ValueError:
        return None


def _payload(capture: dict[str, Any]) -> str:
    data = str(capture.get("data", ""))
    if capture.get("encoding") == "BASE64":
        return base64.b64decode(data).decode("utf-8", errors="replace")
    return data


def user_text(messages: Any) -> str:
    """The user turns of a chat (``[{"role", "content"}]``), one per line: what the person
    asked, without the system prompt or the assistant's answers. The drift reference takes a
    training record's prompt the same way (:mod:`tuneloop.watch.drift_reference`)."""
    if not isinstance(messages, list):
        return ""
    return "\n".join(
        str(m.get("content", ""))
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user" and m.get("content")
    )


def _prompt_text(body: str) -> str:
    """The request: our container's ``{"prompt": ...}`` or ``{"messages": [...]}``
    (docs/contracts.md), or LMI's ``{"inputs": "<prompt>", "parameters": {...}}``."""
    parsed = json.loads(body)
    if not isinstance(parsed, dict):
        return ""
    if "messages" in parsed:
        return user_text(parsed["messages"])
    inputs = parsed.get("prompt", parsed.get("inputs"))
    if isinstance(inputs, list):
        return "\n".join(str(item) for item in inputs)
    return "" if inputs is None else str(inputs)


def _response_text(body: str) -> str:
    """``{"generated_text": ...}``, or a list of those (the TGI-style shape)."""
    if not body:
        return ""
    parsed = json.loads(body)
    if isinstance(parsed, list):
        parsed = parsed[0] if parsed else {}
    text = parsed.get("generated_text") if isinstance(parsed, dict) else None
    return "" if text is None else str(text)


def parse_capture_line(line: str, redactors: Sequence[Redactor]) -> CapturedExchange | None:
    """One captured invocation, redacted; ``None`` for a line without a usable prompt."""
    try:
        record = json.loads(line)
        data = record["captureData"]
        prompt = _prompt_text(_payload(data["endpointInput"]))
        response = _response_text(_payload(data.get("endpointOutput", {})))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("skipping an unreadable capture line: %s", type(error).__name__)
        return None
    if not prompt.strip():
        return None
    redacted_prompt = redact(prompt, redactors)
    redacted_response = redact(response, redactors)
    return CapturedExchange(
        prompt=redacted_prompt.text,
        response=redacted_response.text,
        prompt_redactions=sum(redacted_prompt.counts.values()),
        response_redactions=sum(redacted_response.counts.values()),
        inference_time=str(record.get("eventMetadata", {}).get("inferenceTime", "")),
    )


def read_window(
    s3: Any,
    bucket: str,
    endpoint: str,
    variant: str,
    start: datetime,
    end: datetime,
    redactors: Sequence[Redactor],
    limit: int | None = None,
) -> list[CapturedExchange]:
    """The redacted exchanges captured in ``[start, end)``, at most ``limit`` of them."""
    exchanges: list[CapturedExchange] = []
    for key in list_capture_keys(s3, bucket, endpoint, variant, start, end):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        for line in body.splitlines():
            if not line.strip():
                continue
            exchange = parse_capture_line(line, redactors)
            if exchange is not None:
                exchanges.append(exchange)
                if limit is not None and len(exchanges) >= limit:
                    return exchanges
    return exchanges
