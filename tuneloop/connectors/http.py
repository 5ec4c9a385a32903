"""Pull a paginated JSON API with urllib (standard library: the Lambda needs no layer).

Retries connection errors, 429 and 5xx with exponential backoff and jitter (a 429's
``Retry-After`` wins when given); any other 4xx is an error at once, naming the status
and URL. The auth header's value is never logged or put into an error.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneloop.connectors.records import get_path, is_missing, lookup
from tuneloop.connectors.settings import HttpSettings

logger = logging.getLogger(__name__)

USER_AGENT = "tuneloop-connector/1"
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class HttpConnectorError(RuntimeError):
    """The API answered with an error, or retries ran out; the message says which."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: Any


@dataclass
class HttpClient:
    settings: HttpSettings
    auth_value: str = field(default="", repr=False)
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    retries: int = 0
    """Retries made so far (all requests)."""

    def _request(self, url: str) -> urllib.request.Request:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.auth_value:
            headers[self.settings.auth_header] = self.settings.auth_prefix + self.auth_value
        return urllib.request.Request(url, headers=headers, method="GET")

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry ``attempt`` (0-based): half fixed, half random (jitter)."""
        cap = self.settings.max_backoff_seconds
        if retry_after is not None:
            return min(max(retry_after, 0.0), cap)
        delay = min(cap, self.settings.backoff_seconds * 2**attempt)
        return delay / 2 + self.jitter() * delay / 2

    def _scrub(self, text: str) -> str:
        # An API that echoes the request's headers in its error body must not leak the secret.
        return text.replace(self.auth_value, "<redacted>") if self.auth_value else text

    def get_json(self, url: str) -> Response:
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(
                    self._request(url), timeout=self.settings.timeout_seconds
                ) as reply:
                    raw = reply.read()
                    headers = {k.lower(): v for k, v in reply.headers.items()}
                    return Response(reply.status, headers, _decode(url, raw))
            except urllib.error.HTTPError as error:
                status = error.code
                detail = self._scrub(_snippet(error.read()))
                if status != 429 and status < 500:
                    raise HttpConnectorError(
                        f"GET {_redact_url(url)} failed with HTTP {status} {error.reason}: {detail}"
                        + (" (check the secret and auth_header)" if status in (401, 403) else "")
                    ) from None
                if status == 429:
                    retry_after = _retry_after(error.headers.get("Retry-After"))
                problem = f"HTTP {status}"
            except (
                urllib.error.URLError,
                http.client.HTTPException,
                ConnectionError,
                TimeoutError,
            ) as error:
                problem = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
            if attempt + 1 == attempts:
                raise HttpConnectorError(
                    f"GET {_redact_url(url)} failed after {attempts} attempts; last: {problem}"
                )
            delay = self.backoff(attempt, retry_after)
            self.retries += 1
            logger.warning(
                "retrying GET %s after %s in %.2fs (attempt %d of %d)",
                _redact_url(url),
                problem,
                delay,
                attempt + 2,
                attempts,
            )
            self.sleep(delay)
        raise AssertionError("unreachable")


def _decode(url: str, raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpConnectorError(
            f"GET {_redact_url(url)} did not return JSON: {exc}: {_snippet(raw)}"
        ) from None


def _snippet(raw: bytes) -> str:
    return raw[:300].decode("utf-8", "replace").strip() or "(empty body)"


def _redact_url(url: str) -> str:
    # Query values may carry cursors or keys some APIs take as parameters: show names only.
    parts = urllib.parse.urlsplit(url)
    names = [name for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    query = "&".join(f"{name}=..." for name in names)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _retry_after(value: str | None) -> float | None:
    """``Retry-After``: seconds, or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def with_params(url: str, params: Mapping[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    query.update({k: str(v) for k, v in params.items()})
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def first_url(settings: HttpSettings, since: Any) -> str:
    params = dict(settings.params)
    if settings.page_size_param:
        params[settings.page_size_param] = str(settings.page_size)
    if settings.since_param and since is not None:
        params[settings.since_param] = str(since)
    if settings.pagination == "page":
        params[settings.page_param] = str(settings.first_page)
    return with_params(settings.url, params)


def records_of(settings: HttpSettings, url: str, body: Any) -> list[Any]:
    found = lookup(body, settings.records_path)
    if is_missing(found) or not isinstance(found, list):
        where = f"at {settings.records_path!r}" if settings.records_path else "as the body"
        raise HttpConnectorError(
            f"GET {_redact_url(url)}: expected the records array {where}, got "
            f"{type(None if is_missing(found) else found).__name__}"
        )
    return found


def _next_url(
    settings: HttpSettings, url: str, response: Response, records: list[Any], page: int
) -> str | None:
    if settings.pagination == "next_link":
        link = get_path(response.body, settings.next_path)
        if not link:
            match = _LINK_NEXT.search(response.headers.get("link", ""))
            link = match.group(1) if match else None
        return urllib.parse.urljoin(url, str(link)) if link else None
    if settings.pagination == "cursor":
        cursor = get_path(response.body, settings.cursor_path)
        return with_params(url, {settings.cursor_param: str(cursor)}) if cursor else None
    if settings.pagination == "page":
        if not records or (settings.page_size_param and len(records) < settings.page_size):
            return None
        return with_params(url, {settings.page_param: str(settings.first_page + page + 1)})
    return None


def iter_pages(client: HttpClient, since: Any) -> Iterator[list[Any]]:
    """Each page's records, following the configured pagination until the last page."""
    settings = client.settings
    url: str | None = first_url(settings, since)
    page = 0
    while url is not None:
        if page >= settings.max_pages:
            raise HttpConnectorError(
                f"more than max_pages={settings.max_pages} pages from {_redact_url(settings.url)}; "
                "raise max_pages or check the pagination settings"
            )
        response = client.get_json(url)
        records = records_of(settings, url, response.body)
        yield records
        url = _next_url(settings, url, response, records, page)
        page += 1
