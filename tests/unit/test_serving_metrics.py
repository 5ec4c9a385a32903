"""Per-request metrics: one JSON line per invocation, counts of errors, never the prompt."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from serving_client import post
from tiny_models import make_tiny_causal_lm

from tuneloop.serving.engine import Generator
from tuneloop.serving.http import InferenceServer, make_server
from tuneloop.serving.metrics import ServingMetrics

LINE_KEYS = {
    "event",
    "status",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_s",
    "requests_total",
    "errors_total",
    "finish_reason",
    "empty",
    "truncated",
    "refusal",
}
SECRET = "my-card-is-4111-1111"


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Generator:
    return Generator.from_model_dir(make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "m"))


@pytest.fixture
def served(generator: Generator) -> Iterator[tuple[InferenceServer, io.StringIO]]:
    stream = io.StringIO()
    httpd = make_server(generator, "127.0.0.1", 0, metrics_stream=stream)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd, stream
    httpd.shutdown()
    httpd.server_close()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_invocation_logs_one_line_with_sizes_and_timings(
    served: tuple[InferenceServer, io.StringIO],
) -> None:
    httpd, stream = served
    status, body = post(
        httpd, json.dumps({"prompt": SECRET, "parameters": {"max_new_tokens": 6}}).encode()
    )
    assert status == 200
    (line,) = lines(stream)
    assert set(line) == LINE_KEYS
    assert line["event"] == "invocation" and line["status"] == 200
    assert line["prompt_tokens"] == body["prompt_tokens"]
    assert line["completion_tokens"] == body["completion_tokens"]
    assert line["latency_ms"] > 0
    expected_rate = line["completion_tokens"] / (line["latency_ms"] / 1000)
    assert line["tokens_per_s"] == pytest.approx(expected_rate, rel=0.05)
    assert (line["requests_total"], line["errors_total"]) == (1, 0)


def test_errors_are_counted_and_logged_without_the_prompt(
    served: tuple[InferenceServer, io.StringIO],
) -> None:
    httpd, stream = served
    assert post(httpd, json.dumps({"prompt": SECRET * 60}).encode())[0] == 400  # too long
    assert post(httpd, json.dumps({"prompt": SECRET, "extra": SECRET}).encode())[0] == 400
    assert post(httpd, json.dumps({"prompt": SECRET}).encode())[0] == 200
    logged = lines(stream)
    assert [line["status"] for line in logged] == [400, 400, 200]
    assert [line["errors_total"] for line in logged] == [1, 2, 2]
    assert httpd.metrics.errors_total == 2 and httpd.metrics.requests_total == 3
    assert logged[0]["completion_tokens"] is None and logged[0]["tokens_per_s"] is None
    assert all(set(line) == LINE_KEYS for line in logged)
    assert SECRET not in stream.getvalue()
    assert "4111" not in stream.getvalue()


def test_lines_go_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = ServingMetrics()
    metrics.record(status=500, latency_ms=12.34)
    line = json.loads(capsys.readouterr().out)
    assert line["status"] == 500 and line["latency_ms"] == 12.3 and line["errors_total"] == 1


def test_concurrent_records_keep_whole_lines() -> None:
    stream = io.StringIO()
    metrics = ServingMetrics(stream)

    def record_many() -> None:
        for _ in range(50):
            metrics.record(status=200, latency_ms=5.0, prompt_tokens=3, completion_tokens=10)

    threads = [threading.Thread(target=record_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logged = lines(stream)
    assert len(logged) == 200 and metrics.requests_total == 200
    assert sorted(line["requests_total"] for line in logged) == list(range(1, 201))
    assert {line["tokens_per_s"] for line in logged} == {2000.0}


@pytest.mark.parametrize(
    ("quiet_failure", "flags"),
    [
        (None, (False, False, False)),
        ("empty", (True, False, False)),
        ("refuse", (False, False, True)),
        ("truncate", (False, True, False)),
    ],
)
def test_quiet_failure_switch_shows_in_the_emf_line(
    generator: Generator, quiet_failure: str | None, flags: tuple[bool, bool, bool]
) -> None:
    # Given a server that knows its endpoint, with the test switch set (or not)
    quiet = Generator(generator.model, generator.tokenizer, "v-quiet", quiet_failure=quiet_failure)
    stream = io.StringIO()
    metrics = ServingMetrics(stream, endpoint_name="ep", model_version="v-quiet")
    httpd = make_server(quiet, "127.0.0.1", 0, metrics=metrics)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        # When a client asks for a long enough answer
        body = {"prompt": SECRET, "parameters": {"max_new_tokens": 8, "stop": ["\u2603"]}}
        status, answer = post(httpd, json.dumps(body).encode())
    finally:
        httpd.shutdown()
        httpd.server_close()
    # Then the line's metric members say what kind of answer it was, and hold no text
    assert status == 200
    (line,) = lines(stream)
    empty, truncated, refusal = flags
    assert (line["EmptyAnswer"], line["Refusal"]) == (int(empty), int(refusal))
    assert (line["empty"], line["refusal"]) == (empty, refusal)
    # A tiny random model may ramble to its limit by itself; the switch always does.
    assert line["Truncated"] == int(line["StopReason"] == "length")
    assert line["EndpointName"] == "ep" and line["ModelVersion"] == "v-quiet"
    assert line["OutputTokens"] == answer["completion_tokens"]
    assert SECRET not in stream.getvalue()
    if truncated:
        assert line["Truncated"] == 1 and answer["completion_tokens"] == 1
