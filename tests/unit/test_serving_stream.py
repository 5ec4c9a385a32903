"""Streaming invocations: one JSON line per token in a chunked response, then a last line."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tiny_models import make_tiny_causal_lm

from tuneloop.serving.batching import BatchSettings
from tuneloop.serving.engine import Generator, TextDeltas, parse_request
from tuneloop.serving.http import InferenceServer, make_server


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Generator:
    return Generator.from_model_dir(make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "m"))


@pytest.fixture
def server(generator: Generator) -> Iterator[InferenceServer]:
    httpd = make_server(
        generator, "127.0.0.1", 0, batch_settings=BatchSettings(max_batch_size=4, wait_ms=50)
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def stream(
    httpd: InferenceServer, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], list[dict[str, Any]]]:
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=60)
    try:
        conn.request("POST", "/invocations", body=json.dumps(payload), headers=headers or {})
        response = conn.getresponse()
        head = {k.lower(): v for k, v in response.getheaders()}
        if response.status != 200:
            return response.status, head, [json.loads(response.read())]
        return response.status, head, [json.loads(line) for line in response]
    finally:
        conn.close()


def check_stream(lines: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    tokens, last = lines[:-1], lines[-1]
    assert all(set(line) == {"token"} for line in tokens), lines
    text = "".join(line["token"]["text"] for line in tokens)
    assert text == expected["generated_text"] == last["generated_text"]
    assert last["completion_tokens"] == expected["completion_tokens"]
    assert last["prompt_tokens"] == expected["prompt_tokens"]
    assert last["details"]["generated_tokens"] == expected["completion_tokens"]
    eos = last["details"]["finish_reason"] == "eos"
    # One line per generated token, plus the EOS line (special, no text) if it ended so.
    assert len(tokens) == expected["completion_tokens"] + eos
    assert [line["token"]["special"] for line in tokens] == [False] * (len(tokens) - eos) + [
        True
    ] * eos
    assert 0 < last["first_token_ms"] <= last["latency_ms"]


def test_stream_true_gives_the_same_text_token_by_token(
    server: InferenceServer, generator: Generator
) -> None:
    payload = {"prompt": "hello", "parameters": {"max_new_tokens": 20}}
    expected = generator.generate(parse_request(payload))
    status, head, lines = stream(server, {**payload, "stream": True})
    assert status == 200
    assert head["content-type"] == "application/jsonlines"
    assert head["transfer-encoding"] == "chunked"
    check_stream(lines, expected)
    assert lines[-1]["details"]["finish_reason"] in ("eos", "length")


@pytest.mark.parametrize("header", ["Accept", "X-Amzn-SageMaker-Accept"])
def test_the_jsonlines_accept_header_asks_for_a_stream(
    server: InferenceServer, generator: Generator, header: str
) -> None:
    payload = {"messages": [{"role": "user", "content": "hi"}], "parameters": {"max_new_tokens": 9}}
    expected = generator.generate(parse_request(payload))
    status, head, lines = stream(server, payload, {header: "application/jsonlines"})
    assert status == 200 and head["content-type"] == "application/jsonlines"
    check_stream(lines, expected)


def test_a_stop_string_is_never_streamed(server: InferenceServer, generator: Generator) -> None:
    text = generator.generate(
        parse_request({"prompt": "abc", "parameters": {"max_new_tokens": 12}})
    )["generated_text"]
    assert len(text) >= 4, text
    payload = {"prompt": "abc", "parameters": {"max_new_tokens": 12, "stop": text[2:4]}}
    expected = generator.generate(parse_request(payload))
    status, _, lines = stream(server, {**payload, "stream": True})
    assert status == 200
    assert lines[-1]["details"]["finish_reason"] == "stop"
    streamed = "".join(line["token"]["text"] for line in lines[:-1])
    assert streamed == expected["generated_text"] == text[: text.find(text[2:4])]


def test_streams_running_together_each_get_their_own_tokens(
    server: InferenceServer, generator: Generator
) -> None:
    payloads = [
        {"prompt": prompt, "parameters": {"max_new_tokens": n}}
        for prompt, n in (("hello", 16), ("a longer prompt here", 5), ("zz", 11))
    ]
    expected = [generator.generate(parse_request(p)) for p in payloads]
    results: list[Any] = [None] * len(payloads)

    def send(index: int) -> None:
        results[index] = stream(server, {**payloads[index], "stream": True})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for (status, _, lines), solo in zip(results, expected, strict=True):
        assert status == 200
        check_stream(lines, solo)


def test_a_bad_streaming_request_gets_a_plain_400(server: InferenceServer) -> None:
    status, head, body = stream(server, {"prompt": "x" * 600, "stream": True})
    assert status == 400 and head["content-type"] == "application/json"
    assert "exceeds" in body[0]["error"]
    status, _, body = stream(server, {"prompt": "x", "stream": "yes"})
    assert status == 400 and "stream" in body[0]["error"]


def test_text_deltas_hold_back_a_possible_stop_and_a_split_character() -> None:
    pieces = {1: "Hel", 2: "lo wo", 3: "rld!"}

    def detokenize(tokens: list[int]) -> str:
        return "".join(pieces[t] for t in tokens)

    deltas = TextDeltas(detokenize, ["wor"])
    assert deltas.push([1]) == "Hel"
    assert deltas.push([1, 2]) == "lo "  # "wo" may begin "wor": held back
    assert deltas.finish([1, 2, 3]) == ""  # cut before the stop
    split = TextDeltas(lambda tokens: "\ufffd" if len(tokens) == 1 else "é", [])
    assert split.push([1]) == ""  # half a character: nothing yet
    assert split.finish([1, 2]) == "é"
