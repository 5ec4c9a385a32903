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
import torch
from serving_client import post
from tiny_models import make_tiny_causal_lm

from tuneloop.serving.batching import Batcher, BatchSettings
from tuneloop.serving.continuous import ContinuousBatch, Running
from tuneloop.serving.decode import DecodeResult
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
    results = post_concurrently(server, [json.dumps(p).encode() for p in PAYLOADS])
    assert server.batcher.peak_rows >= 2, server.batcher.admissions  # really batched
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
    request = parse_request({"prompt": "hi", "parameters": {"max_new_tokens": 2}})
    threads = [threading.Thread(target=batcher.submit, args=(request,)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    batcher.close()
    assert sum(batcher.admissions) == 5
    assert batcher.peak_rows == 2


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)
    return condition()


def test_a_lone_request_starts_without_waiting_the_window(
    generator: RecordingGenerator,
) -> None:
    batcher = Batcher(generator, BatchSettings(max_batch_size=8, wait_ms=10_000))
    request = parse_request({"prompt": "hi", "parameters": {"max_new_tokens": 2}})
    try:
        started = time.monotonic()
        batcher.submit(request)  # nothing else announced: no 10 s wait
        assert time.monotonic() - started < 5
    finally:
        batcher.close()
    assert batcher.admissions == [1]


def test_the_worker_counts_its_decode_steps_and_rows(generator: RecordingGenerator) -> None:
    batcher = Batcher(generator, BatchSettings(max_batch_size=8, wait_ms=0))
    request = parse_request({"prompt": "hi", "parameters": {"max_new_tokens": 6}})
    try:
        response, reason = batcher.answer(request)
    finally:
        batcher.close()
    # The prefill chooses the first token, every decode step one more (an EOS included).
    chosen = response["completion_tokens"] + (reason == "eos")
    assert chosen > 1, response  # decode steps ran
    assert batcher.times.steps == chosen - 1
    assert batcher.times.row_steps == batcher.times.steps  # one row in every step


def test_an_announced_request_joins_the_first_prefill(generator: RecordingGenerator) -> None:
    batcher = Batcher(generator, BatchSettings(max_batch_size=8, wait_ms=10_000))
    request = parse_request({"prompt": "hi", "parameters": {"max_new_tokens": 2}})
    batcher.announce()  # a second request is being read by a handler
    first = threading.Thread(target=batcher.submit, args=(request,))
    second = threading.Thread(target=batcher.submit, args=(request,), kwargs={"announced": True})
    try:
        first.start()
        assert not wait_for(lambda: bool(batcher.admissions), 0.3)  # held open for it
        second.start()
    finally:
        first.join(timeout=60)
        second.join(timeout=60)
        batcher.close()
    assert batcher.admissions == [2]


def longest_prompt(generator: Generator, max_new_tokens: int) -> dict[str, Any]:
    """Of a few prompts, the one whose greedy answer runs longest on the tiny model."""
    candidates = [
        {"prompt": prompt, "parameters": {"max_new_tokens": max_new_tokens}}
        for prompt in ("hello", "abc", "zz top", "what is this", "tell me more", "x")
    ]
    return max(candidates, key=lambda c: alone(generator, c)["completion_tokens"])


def test_a_request_joins_the_running_batch_and_leaves_when_it_ends(
    generator: RecordingGenerator,
) -> None:
    long = longest_prompt(generator, 400)
    long_solo = alone(generator, long)
    assert long_solo["completion_tokens"] >= 100, long_solo  # long enough to join it
    short = {"prompt": "a short one", "parameters": {"max_new_tokens": 3}}
    short_solo = alone(generator, short)
    batcher = Batcher(generator, BatchSettings(max_batch_size=4, wait_ms=0))
    results: dict[str, Any] = {}
    finished: list[str] = []

    def submit(name: str, payload: dict[str, Any]) -> None:
        results[name] = batcher.submit(parse_request(payload))
        finished.append(name)

    threads = [threading.Thread(target=submit, args=("long", long))]
    try:
        threads[0].start()
        assert wait_for(lambda: batcher.active_rows == 1, 10)  # the long one is decoding
        threads.append(threading.Thread(target=submit, args=("short", short)))
        threads[1].start()
        threads[1].join(timeout=60)
        # The short request joined the running batch and left it before the long one ended.
        assert finished == ["short"], finished
        assert batcher.peak_rows == 2
    finally:
        for thread in threads:
            thread.join(timeout=60)
        batcher.close()
    assert finished == ["short", "long"]
    assert batcher.admissions == [1, 1]
    assert batcher.times.steps < batcher.times.row_steps  # some steps ran both rows
    for name, solo in (("long", long_solo), ("short", short_solo)):
        assert results[name]["generated_text"] == solo["generated_text"]
        assert results[name]["completion_tokens"] == solo["completion_tokens"]


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


def test_greedy_rows_joining_at_different_steps_equal_plain_generate(
    generator: RecordingGenerator,
) -> None:
    """The continuous batch against transformers' own one-at-a-time ``generate``."""
    prompts = ["hi", "a much longer prompt than all the others here", "abc def", "x"]
    budgets = [9, 4, 14, 6]
    rows = [
        generator.prepare(parse_request({"prompt": p, "parameters": {"max_new_tokens": n}}))
        for p, n in zip(prompts, budgets, strict=True)
    ]
    eos = set(generator._eos_ids)
    expected = []
    with torch.inference_mode():
        for ids, row in rows:
            output = generator.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                max_new_tokens=row.max_new_tokens,
                do_sample=False,
                pad_token_id=generator._pad_id,
            )[0, len(ids) :].tolist()
            expected.append([t for t in output if t not in eos][: row.max_new_tokens])
    batch = ContinuousBatch(
        generator.model,
        pad_token_id=generator._pad_id,
        eos_token_ids=generator._eos_ids,
        detokenize=generator._detokenize,
        max_batch_size=4,
    )
    got: dict[int, list[int]] = {}

    def sequence(index: int) -> Running:
        def done(result: DecodeResult) -> None:
            got[index] = result.tokens

        return batch.sequence(rows[index][1], done)

    with torch.inference_mode():
        batch.admit([sequence(0), sequence(1)])  # two together, then one per step
        batch.step()
        batch.admit([sequence(2)])
        batch.step()
        batch.step()
        batch.admit([sequence(3)])
        while batch.active:
            batch.step()
    assert [got[i] for i in range(len(rows))] == expected
