"""HTTP API connector against a local paginated JSON server, with moto for AWS.

The server checks the auth header, pages in three styles, serves ``since`` inclusively (as
many APIs do) and injects 429/5xx answers on demand.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.connector_fixtures import ConnectorAws, aws_credentials, connector_aws
from tests.integration.connector_servers import ApiServer, api_server
from tuneloop.connectors import ConnectorSettings, HttpSettings, run_connector
from tuneloop.connectors.http import HttpClient, HttpConnectorError

__all__ = ["api_server", "aws_credentials", "connector_aws"]

STYLES: dict[str, dict[str, Any]] = {
    "cursor": {
        "pagination": "cursor",
        "records_path": "result.items",
        "cursor_path": "next_cursor",
        "cursor_param": "cursor",
    },
    "next_link": {"pagination": "next_link", "records_path": "items", "next_path": "links.next"},
    "page": {"pagination": "page", "records_path": "data", "page_param": "page"},
}
PATHS = {"cursor": "/cursor", "next_link": "/links", "page": "/pages"}


def records(n: int, start: int = 1, at: str | None = None) -> list[dict[str, Any]]:
    return [
        {"id": f"r{i:03d}", "updated_at": at or f"2026-01-01T00:00:{i:02d}Z", "body": f"note {i}"}
        for i in range(start, start + n)
    ]


def settings_for(
    server: ApiServer, secret_arn: str, style: str = "cursor", rows_per_object: int = 4, **http: Any
) -> ConnectorSettings:
    options: dict[str, Any] = {
        **STYLES[style],
        "url": server.url + PATHS[style],
        "fields": {"text": "body", "metadata.id": "id"},
        "watermark_field": "updated_at",
        "since_param": "since",
        "key_field": "id",
        "auth_prefix": "Bearer ",
        "secret_field": "token",
        "backoff_seconds": 0.01,
        "max_backoff_seconds": 0.05,
        **http,
    }
    return ConnectorSettings(
        name="notes",
        kind="http",
        schedule="rate(15 minutes)",
        dataset="notes",
        secret_arn=secret_arn,
        rows_per_object=rows_per_object,
        http=HttpSettings(**options),
    )


@pytest.fixture
def secret(connector_aws: ConnectorAws, api_server: ApiServer) -> str:
    return connector_aws.create_secret(
        "notes-api", json.dumps({"token": api_server.state.token, "other": "x"})
    )


def run(settings: ConnectorSettings, connector_aws: ConnectorAws, **kwargs: Any) -> Any:
    return run_connector(
        settings,
        raw_bucket=connector_aws.raw_bucket,
        control_table=connector_aws.control_table,
        **kwargs,
    )


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_pagination_style_pulls_every_record_once(
    style: str, api_server: ApiServer, connector_aws: ConnectorAws, secret: str
) -> None:
    # Given 9 records served 2 per page
    api_server.state.records = records(9)
    # When the connector runs
    result = run(settings_for(api_server, secret, style), connector_aws)
    # Then all 9 arrive once, mapped, in objects of 4, each with its manifest
    assert result.rows == 9
    texts = [r["text"] for r in connector_aws.all_records()]
    assert sorted(texts) == sorted(f"note {i}" for i in range(1, 10))
    assert [len(connector_aws.records(k)) for k in connector_aws.data_keys()] == [4, 4, 1]
    assert len(connector_aws.keys()) == 6  # 3 data objects + 3 manifests
    # And every request carried the secret as a Bearer token
    assert {r["auth"] for r in api_server.state.requests} == {"Bearer s3cr3t-token"}
    assert connector_aws.state("notes")["watermark"] == {
        "type": "str",
        "value": "2026-01-01T00:00:09Z",
    }


def test_second_run_sends_since_and_skips_ties_it_already_has(
    api_server: ApiServer, connector_aws: ConnectorAws, secret: str
) -> None:
    # Given a first run whose newest records share one timestamp
    api_server.state.records = records(3) + records(2, start=4, at="2026-01-01T00:00:30Z")
    settings = settings_for(api_server, secret, "next_link")
    assert run(settings, connector_aws).rows == 5
    # When a record arrives at that same timestamp and one later, and the connector runs again
    api_server.state.records += records(1, start=6, at="2026-01-01T00:00:30Z") + records(
        1, start=7, at="2026-01-01T00:00:31Z"
    )
    api_server.state.requests.clear()
    second = run(settings, connector_aws)
    # Then it asked for records since the watermark and kept only the two new ones
    assert api_server.state.requests[0]["query"]["since"] == "2026-01-01T00:00:30Z"
    assert second.rows == 2
    assert sorted(r["text"] for k in second.objects for r in connector_aws.records(k)) == [
        "note 6",
        "note 7",
    ]
    # And a third run writes nothing
    assert run(settings, connector_aws).objects == []


def test_429_and_5xx_are_retried_with_backoff_honouring_retry_after(
    api_server: ApiServer, connector_aws: ConnectorAws, secret: str
) -> None:
    # Given an API that answers 429 (Retry-After: 3), then 500, then 503, then serves
    api_server.state.records = records(3)
    api_server.state.failures = [429, 500, 503]
    api_server.state.retry_after = "3"
    settings = settings_for(api_server, secret, backoff_seconds=1.0, max_backoff_seconds=10.0)
    assert settings.http is not None
    sleeps: list[float] = []
    client = HttpClient(
        settings.http, api_server.state.token, sleep=sleeps.append, jitter=lambda: 1.0
    )
    # When the connector runs
    result = run(settings, connector_aws, http_client=client)
    # Then it waited as told for the 429, then backed off exponentially, and got every record
    assert sleeps == [3.0, 2.0, 4.0]
    assert result.retries == 3 and result.rows == 3


def test_retries_run_out_then_nothing_moves(
    api_server: ApiServer, connector_aws: ConnectorAws, secret: str
) -> None:
    api_server.state.records = records(3)
    api_server.state.failures = [500] * 10
    settings = settings_for(api_server, secret, max_retries=2)
    with pytest.raises(HttpConnectorError, match="failed after 3 attempts; last: HTTP 500"):
        run(settings, connector_aws)
    state = connector_aws.state("notes")
    assert "watermark" not in state and state["last_status"] == "failed"
    assert connector_aws.data_keys() == []


def test_a_failure_after_written_objects_leaves_the_watermark_alone(
    api_server: ApiServer, connector_aws: ConnectorAws, secret: str
) -> None:
    # Given a first page that arrives and a second page that keeps failing
    api_server.state.records = records(9)
    settings = settings_for(api_server, secret, max_retries=0, rows_per_object=1)
    real_get = HttpClient.get_json
    calls: list[str] = []

    def flaky(self: HttpClient, url: str) -> Any:
        calls.append(url)
        if len(calls) == 2:
            raise HttpConnectorError("GET ... failed after 1 attempts; last: HTTP 502")
        return real_get(self, url)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HttpClient, "get_json", flaky)
        with pytest.raises(HttpConnectorError, match="HTTP 502"):
            run(settings, connector_aws)
    # Then the objects of the first page are there, but the watermark did not move
    assert len(connector_aws.data_keys()) == 2
    assert "watermark" not in connector_aws.state("notes")
    # And the next run pulls everything again (ingestion stores each record once)
    assert run(settings, connector_aws).rows == 9


def test_a_rejected_token_is_a_clear_error_that_never_shows_the_token(
    api_server: ApiServer, connector_aws: ConnectorAws
) -> None:
    wrong = connector_aws.create_secret("wrong", json.dumps({"token": "wrong-token-value"}))
    settings = settings_for(api_server, wrong)
    with pytest.raises(HttpConnectorError, match="HTTP 401") as raised:
        run(settings, connector_aws)
    assert "wrong-token-value" not in str(raised.value)
    assert "check the secret" in str(raised.value)
    state = connector_aws.state("notes")
    assert "wrong-token-value" not in json.dumps(state, default=str)
    assert len(api_server.state.requests) == 1  # a 4xx is not retried


def test_connection_errors_are_retried_then_reported(connector_aws: ConnectorAws) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: connections are refused
    http = HttpSettings(url=f"http://127.0.0.1:{port}/x", max_retries=2, backoff_seconds=0.5)
    sleeps: list[float] = []
    client = HttpClient(http, sleep=sleeps.append, jitter=lambda: 0.0)
    with pytest.raises(HttpConnectorError, match="after 3 attempts; last: URLError"):
        client.get_json(http.url)
    assert sleeps == [0.25, 0.5]  # half of 0.5 * 2**attempt, no jitter


def test_records_path_that_is_not_an_array_names_the_path(
    api_server: ApiServer, connector_aws: ConnectorAws, secret: str
) -> None:
    api_server.state.records = records(1)
    settings = settings_for(api_server, secret, records_path="result.missing")
    with pytest.raises(HttpConnectorError, match=r"records array at 'result\.missing'"):
        run(settings, connector_aws)
