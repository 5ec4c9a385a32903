"""Backoff timing, Retry-After parsing and URL building of the HTTP connector."""

from __future__ import annotations

import email.utils
import time

from tuneloop.connectors.http import HttpClient, _redact_url, _retry_after, first_url
from tuneloop.connectors.settings import HttpSettings


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    settings = HttpSettings(url="https://x", backoff_seconds=1.0, max_backoff_seconds=5.0)
    low = HttpClient(settings, jitter=lambda: 0.0)
    high = HttpClient(settings, jitter=lambda: 1.0)
    assert [low.backoff(a) for a in range(4)] == [0.5, 1.0, 2.0, 2.5]
    assert [high.backoff(a) for a in range(4)] == [1.0, 2.0, 4.0, 5.0]
    assert high.backoff(0, retry_after=30) == 5.0  # Retry-After is capped too
    assert high.backoff(3, retry_after=2) == 2.0


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _retry_after("7") == 7.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    waited = _retry_after(later)
    assert waited is not None and 25 <= waited <= 31


def test_first_url_merges_params_page_size_since_and_page() -> None:
    settings = HttpSettings(
        url="https://api.example.com/v1/items?fixed=1",
        params={"state": "open"},
        pagination="page",
        page_param="p",
        first_page=0,
        page_size_param="per_page",
        page_size=50,
        watermark_field="updated",
        since_param="since",
    )
    assert first_url(settings, "2026-01-01T00:00:00Z") == (
        "https://api.example.com/v1/items?fixed=1&state=open&per_page=50"
        "&since=2026-01-01T00%3A00%3A00Z&p=0"
    )
    assert first_url(settings, None).endswith("per_page=50&p=0")


def test_urls_in_messages_show_parameter_names_only() -> None:
    assert _redact_url("https://x/y?cursor=abc&key=secret") == "https://x/y?cursor=...&key=..."


def test_the_secret_is_scrubbed_from_error_text() -> None:
    client = HttpClient(HttpSettings(url="https://x"), "tok-123")
    assert client._scrub('{"error": "bad header Bearer tok-123"}') == (
        '{"error": "bad header Bearer <redacted>"}'
    )
    assert "tok-123" not in repr(client)
