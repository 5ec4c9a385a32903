"""Serving: the HTTP contract (tuneloop.serving + serve.py) and the DLC handler (inference.py)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_models import make_tiny_causal_lm

from training_containers import inference
from tuneloop.models.loading import write_model_metadata
from tuneloop.serving.engine import Generator
from tuneloop.serving.http import make_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "tiny-v1")


@pytest.fixture(scope="module")
def generator(model_dir: Path) -> Generator:
    return Generator.from_model_dir(model_dir)


@pytest.fixture(scope="module")
def server(generator: Generator) -> Iterator[tuple[str, int]]:
    httpd = make_server(generator, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def request(
    address: tuple[str, int], method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def invoke(address: tuple[str, int], payload: Any) -> tuple[int, dict[str, Any]]:
    return request(address, "POST", "/invocations", json.dumps(payload).encode())


def test_ping(server: tuple[str, int]) -> None:
    status, body = request(server, "GET", "/ping")
    assert status == 200 and body["status"] == "ok"


def test_prompt_returns_text_and_token_counts(
    server: tuple[str, int], generator: Generator
) -> None:
    status, body = invoke(server, {"prompt": "hello", "parameters": {"max_new_tokens": 5}})
    assert status == 200, body
    assert isinstance(body["generated_text"], str)
    assert body["prompt_tokens"] == len(generator.tokenizer("hello")["input_ids"])
    assert 1 <= body["completion_tokens"] <= 5
    assert body["latency_ms"] >= 0
    assert body["model_version"] == "tiny-v1"  # no tuneloop_model.json: the folder name


def test_greedy_decoding_is_deterministic(server: tuple[str, int]) -> None:
    payload = {
        "messages": [{"role": "user", "content": "hi"}],
        "parameters": {"max_new_tokens": 8, "temperature": 0},
    }
    first, second = invoke(server, payload)[1], invoke(server, payload)[1]
    assert first["generated_text"] == second["generated_text"]
    assert first["completion_tokens"] == second["completion_tokens"]


def test_sampling_with_seed_is_reproducible(server: tuple[str, int]) -> None:
    payload = {
        "prompt": "abc",
        "parameters": {"max_new_tokens": 8, "temperature": 1.0, "top_p": 0.9, "seed": 3},
    }
    assert (
        invoke(server, payload)[1]["generated_text"] == invoke(server, payload)[1]["generated_text"]
    )


def test_stop_string_cuts_the_text(generator: Generator) -> None:
    from tuneloop.serving.engine import parse_request

    full = generator.generate(
        parse_request({"prompt": "hello", "parameters": {"max_new_tokens": 12}})
    )
    text = full["generated_text"]
    assert len(text) >= 3, text
    stop = text[1:3]
    cut = generator.generate(
        parse_request({"prompt": "hello", "parameters": {"max_new_tokens": 12, "stop": [stop]}})
    )
    assert cut["generated_text"] == text[: text.find(stop)]
    assert cut["completion_tokens"] <= full["completion_tokens"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "exactly one of"),
        (b'{"prompt": "a", "messages": []}', "exactly one of"),
        (b'{"prompt": 3}', "'prompt' must be"),
        (b'{"messages": "hi"}', "'messages' must be"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}', "role"),
        (b'{"messages": [{"role": "user", "content": 1}]}', "content"),
        (b'{"prompt": "a", "parameters": {"max_new_tokens": "5"}}', "max_new_tokens"),
        (b'{"prompt": "a", "parameters": {"max_new_tokens": true}}', "max_new_tokens"),
        (b'{"prompt": "a", "parameters": {"temperature": -1}}', "temperature"),
        (b'{"prompt": "a", "parameters": {"top_p": 0}}', "top_p"),
        (b'{"prompt": "a", "parameters": {"stop": [1]}}', "stop"),
        (b'{"prompt": "a", "parameters": {"beams": 2}}', "unknown parameter"),
        (b'{"prompt": "a", "parameters": []}', "'parameters' must be"),
        (b'{"prompt": "a", "extra": 1}', "unknown field"),
    ],
)
def test_bad_requests_get_400_with_a_message(
    server: tuple[str, int], body: bytes, message: str
) -> None:
    status, payload = request(server, "POST", "/invocations", body)
    assert status == 400
    assert message in payload["error"]


def test_prompt_longer_than_the_model_is_400(server: tuple[str, int]) -> None:
    status, payload = invoke(server, {"prompt": "x" * 600})
    assert status == 400 and "exceeds" in payload["error"]


def test_unknown_route_is_404(server: tuple[str, int]) -> None:
    assert request(server, "GET", "/nope")[0] == 404
    assert request(server, "POST", "/nope", b"{}")[0] == 404


def test_ping_answers_while_generation_holds_the_lock(
    server: tuple[str, int], generator: Generator
) -> None:
    with generator._lock:  # as if a long generation were running
        started = time.monotonic()
        status, _ = request(server, "GET", "/ping")
        assert status == 200 and time.monotonic() - started < 5


def test_model_version_comes_from_metadata(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from tuneloop.models.loading import load_model_dir

    base_dir = make_tiny_causal_lm(tmp_path / "base")
    base, tokenizer = load_model_dir(base_dir)
    adapter = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    adapter_dir = tmp_path / "model"
    adapter.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(adapter_dir)
    write_model_metadata(adapter_dir, str(base_dir), model_version="v42")
    assert Generator.from_model_dir(adapter_dir).model_version == "v42"


def test_inference_handler_round_trip(model_dir: Path) -> None:
    model = inference.model_fn(str(model_dir))
    data = inference.input_fn(
        b'{"prompt": "hi", "parameters": {"max_new_tokens": 3}}', "application/json"
    )
    output = json.loads(inference.output_fn(inference.predict_fn(data, model), "application/json"))
    assert set(output) == {
        "generated_text",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "model_version",
    }
    with pytest.raises(ValueError, match="prompt"):
        inference.input_fn(b'{"prompt": 1}', "application/json")
    with pytest.raises(ValueError, match="content type"):
        inference.input_fn(b"hi", "text/plain")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_script_prints_address_and_serves(model_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "SM_MODEL_DIR": str(model_dir), "PORT": str(port)}
    env.pop("HOST", None)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "training_containers/serve.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the model is loaded
        assert line.strip() == f"serving on http://127.0.0.1:{port}"
        assert request(("127.0.0.1", port), "GET", "/ping")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_script_fails_cleanly_without_a_model(tmp_path: Path) -> None:
    env = {**os.environ, "SM_MODEL_DIR": str(tmp_path / "missing"), "PORT": str(free_port())}
    result = subprocess.run(
        [sys.executable, str(REPO / "training_containers/serve.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "missing" in result.stderr
