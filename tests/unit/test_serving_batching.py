"""Dynamic batching: concurrent requests share one generate call and get what they would alone."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from serving_client import post
from tiny_models import make_tiny_causal_lm

from tuneloop.serving.batching import Batcher, BatchSettings
from tuneloop.serving.engine import GenerationRequest, Generator, RequestError, parse_request
from tuneloop.serving.http import InferenceServer, make_server


class RecordingGenerator(Generator):
    """Remembers the size of every batch it generated."""

    batch_sizes: list[int]

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        on_result: Callable[[int, dict[str, Any] | Exception], None] | None = None,
    ) -> list[dict[str, Any] | Exception]:
        self.batch_sizes.append(len(requests))
        return super().generate_batch(requests, on_result)


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> RecordingGenerator:
    plain = Generator.from_model_dir(make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "m"))
    recording = RecordingGenerator(plain.model, plain.tokenizer, plain.model_version)
    recording.batch_sizes = []
    return recording


@pytest.fixture
def server(generator: RecordingGenerator) -> Iterator[InferenceServer]:
    # A wide window so that requests sent together from threads surely share a batch.
    settings = BatchSettings(max_batch_size=8, wait_ms=400)
    httpd = make_server(generator, "127.0.0.1", 0, batch_settings=settings)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    generator.batch_sizes.clear()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def post_concurrently(httpd: InferenceServer, bodies: list[bytes]) -> list[tuple[int, Any]]:
    results: list[tuple[int, Any]] = [(0, None)] * len(bodies)
    start = threading.Barrier(len(bodies))

    def send(index: int) -> None:
        start.wait()
        results[index] = post(httpd, bodies[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


PAYLOADS: list[dict[str, Any]] = [
    {"prompt": "hello", "parameters": {"max_new_tokens": 12}},
    {"prompt": "a much longer prompt than the others", "parameters": {"max_new_tokens": 4}},
    {"messages": [{"role": "user", "content": "hi"}], "parameters": {"max_new_tokens": 20}},
    {"prompt": "abc", "parameters": {"max_new_tokens": 9, "temperature": 0.8, "seed": 7}},
]


def alone(generator: Generator, payload: dict[str, Any]) -> dict[str, Any]:
    return generator.generate(parse_request(payload))


def test_concurrent_requests_are_batched_and_match_their_solo_outputs(
    server: InferenceServer, generator: RecordingGenerator
) -> None:
    solo = [alone(generator, payload) for payload in PAYLOADS]
    generator.batch_sizes.clear()
    results = post_concurrently(server, [json.dumps(p).encode() for p in PAYLOADS])
    assert max(generator.batch_sizes) >= 2, generator.batch_sizes  # really batched
    for (status, body), expected in zip(results, solo, strict=True):
        assert status == 200, body
        assert body["generated_text"] == expected["generated_text"]
        assert body["completion_tokens"] == expected["completion_tokens"]
        assert body["prompt_tokens"] == expected["prompt_tokens"]


def test_per_request_stop_string_inside_a_batch(
    server: InferenceServer, generator: RecordingGenerator
) -> None:
    text = alone(generator, {"prompt": "hello", "parameters": {"max_new_tokens": 12}})[
        "generated_text"
    ]
    assert len(text) >= 3, text
    stopping = {"prompt": "hello", "parameters": {"max_new_tokens": 12, "stop": [text[1:3]]}}
    longer = {"prompt": "other prompt", "parameters": {"max_new_tokens": 16}}
    expected = [alone(generator, stopping), alone(generator, longer)]
    results = post_concurrently(
        server, [json.dumps(stopping).encode(), json.dumps(longer).encode()]
    )
    assert results[0][1]["generated_text"] == text[: text.find(text[1:3])]
    for (status, body), solo in zip(results, expected, strict=True):
        assert status == 200
        assert (body["generated_text"], body["completion_tokens"]) == (
            solo["generated_text"],
            solo["completion_tokens"],
        )


def test_bad_requests_in_the_window_get_400_and_leave_the_others_alone(
    server: InferenceServer, generator: RecordingGenerator
) -> None:
    good = PAYLOADS[0]
    expected = alone(generator, good)
    bodies = [
        json.dumps(good).encode(),
        b"{not json",  # rejected before it reaches the batch
        json.dumps({"prompt": "x" * 600}).encode(),  # rejected inside the batch: too long
        json.dumps(good).encode(),
    ]
    results = post_concurrently(server, bodies)
    assert results[1][0] == 400 and "not valid JSON" in results[1][1]["error"]
    assert results[2][0] == 400 and "exceeds" in results[2][1]["error"]
    for status, body in (results[0], results[3]):
        assert status == 200
        assert body["generated_text"] == expected["generated_text"]


def test_ping_answers_while_a_batch_is_generating(
    server: InferenceServer, generator: RecordingGenerator
) -> None:
    body = json.dumps(PAYLOADS[0]).encode()
    with generator._lock:  # the worker is stuck inside generate, as in a long generation
        worker = threading.Thread(target=post, args=(server, body), daemon=True)
        worker.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.request("GET", "/ping")
        assert conn.getresponse().status == 200
        conn.close()
        assert worker.is_alive()  # its invocation is still waiting for the lock
    worker.join(timeout=60)


def test_batches_never_exceed_the_max_size(generator: RecordingGenerator) -> None:
    batcher = Batcher(generator, BatchSettings(max_batch_size=2, wait_ms=200))
    generator.batch_sizes.clear()
    request = parse_request({"prompt": "hi", "parameters": {"max_new_tokens": 2}})
    threads = [threading.Thread(target=batcher.submit, args=(request,)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    batcher.close()
    assert sum(generator.batch_sizes) == 5
    assert max(generator.batch_sizes) == 2


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_lone_request_starts_without_waiting_the_window(
    generator: RecordingGenerator,
) -> None:
    batcher = Batcher(generator, BatchSettings(max_batch_size=8, wait_ms=10_000))
    generator.batch_sizes.clear()
    request = parse_request({"prompt": "hi", "parameters": {"max_new_tokens": 2}})
    threads = [threading.Thread(target=batcher.submit, args=(request,)) for _ in range(2)]
    try:
        with generator._lock:  # the worker blocks inside its batch, as in a long generation
            threads[0].start()
            # Nothing else announced: the batch starts at once, well before the 10 s window.
            assert wait_for(lambda: generator.batch_sizes == [1], 5), generator.batch_sizes
            threads[1].start()  # arrives while the first batch runs: it waits for the next
    finally:
        for thread in threads:
            thread.join(timeout=60)
        batcher.close()
    assert generator.batch_sizes == [1, 1]


def test_an_announced_request_joins_the_batch(generator: RecordingGenerator) -> None:
    batcher = Batcher(generator, BatchSettings(max_batch_size=8, wait_ms=10_000))
    generator.batch_sizes.clear()
    request = parse_request({"prompt": "hi", "parameters": {"max_new_tokens": 2}})
    batcher.announce()  # a second request is being read by a handler
    first = threading.Thread(target=batcher.submit, args=(request,))
    second = threading.Thread(target=batcher.submit, args=(request,), kwargs={"announced": True})
    try:
        first.start()
        assert not wait_for(lambda: bool(generator.batch_sizes), 0.3)  # held open for it
        second.start()
    finally:
        first.join(timeout=60)
        second.join(timeout=60)
        batcher.close()
    assert generator.batch_sizes == [2]


def test_the_next_batch_waits_for_the_clients_just_answered(
    generator: RecordingGenerator,
) -> None:
    batcher = Batcher(generator, BatchSettings(max_batch_size=8, wait_ms=10_000))
    generator.batch_sizes.clear()
    request = parse_request({"prompt": "hi", "parameters": {"max_new_tokens": 2}})

    def submit_in_thread() -> threading.Thread:
        thread = threading.Thread(target=batcher.submit, args=(request,))
        thread.start()
        started.append(thread)
        return thread

    started: list[threading.Thread] = []
    try:
        with generator._lock:  # A runs alone; B and C queue behind it
            first = submit_in_thread()
            assert wait_for(lambda: generator.batch_sizes == [1], 5), generator.batch_sizes
            submit_in_thread(), submit_in_thread()
            assert wait_for(lambda: batcher._queue.qsize() == 2, 5)
        first.join(timeout=60)  # A is answered: its client comes back with its next request
        submit_in_thread()
    finally:
        for thread in started:
            thread.join(timeout=60)
        batcher.close()
    # B and C waited for A's client instead of leaving it alone for the next round.
    assert generator.batch_sizes == [1, 3]


def test_submit_raises_the_request_error(generator: RecordingGenerator) -> None:
    batcher = Batcher(generator, BatchSettings(wait_ms=0))
    try:
        with pytest.raises(RequestError, match="exceeds"):
            batcher.submit(parse_request({"prompt": "x" * 600}))
        started = time.monotonic()
        assert batcher.submit(parse_request({"prompt": "hi"}))["completion_tokens"] >= 1
        assert time.monotonic() - started < 60
    finally:
        batcher.close()


def test_settings_from_env() -> None:
    settings = BatchSettings.from_env(
        {"TUNELOOP_MAX_BATCH_SIZE": "3", "TUNELOOP_BATCH_WAIT_MS": "2.5"}
    )
    assert (settings.max_batch_size, settings.wait_ms) == (3, 2.5)
    assert BatchSettings.from_env({}) == BatchSettings(max_batch_size=8, wait_ms=10.0)
    with pytest.raises(ValueError, match="TUNELOOP_MAX_BATCH_SIZE"):
        BatchSettings.from_env({"TUNELOOP_MAX_BATCH_SIZE": "many"})
    with pytest.raises(ValueError, match="TUNELOOP_BATCH_WAIT_MS"):
        BatchSettings.from_env({"TUNELOOP_BATCH_WAIT_MS": "soon"})
    with pytest.raises(ValueError, match="max batch size"):
        BatchSettings.from_env({"TUNELOOP_MAX_BATCH_SIZE": "0"})


def test_serve_app_rejects_bad_batch_settings(tmp_path: Path, capsys: Any) -> None:
    from tuneloop.serving.app import run

    env = {"SM_MODEL_DIR": str(tmp_path), "TUNELOOP_MAX_BATCH_SIZE": "x"}
    assert run(env) == 1
    assert "TUNELOOP_MAX_BATCH_SIZE" in capsys.readouterr().err


def test_serve_app_rejects_a_bad_thread_count(tmp_path: Path, capsys: Any) -> None:
    from tuneloop.serving.app import run

    assert run({"SM_MODEL_DIR": str(tmp_path), "TUNELOOP_NUM_THREADS": "two"}) == 1
    assert "TUNELOOP_NUM_THREADS must be an integer" in capsys.readouterr().err


def test_a_taken_port_stops_the_worker(
    server: InferenceServer, generator: RecordingGenerator
) -> None:
    def workers() -> int:
        return sum(thread.name == "generation" for thread in threading.enumerate())

    before = workers()
    with pytest.raises(OSError):
        make_server(generator, "127.0.0.1", int(server.server_address[1]))
    assert workers() == before
