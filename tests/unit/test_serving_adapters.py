"""Several LoRA adapters on one base: SageMaker's adapter API, mixed batches, hot swaps."""

from __future__ import annotations

import http.client
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_client import greedy_answer
from tiny_models import make_tiny_adapter, make_tiny_causal_lm

from tuneloop.serving.adapters import ADAPTER_HEADER
from tuneloop.serving.batching import BatchSettings
from tuneloop.serving.engine import Generator
from tuneloop.serving.http import InferenceServer, make_server
from tuneloop.serving.metrics import ServingMetrics

PROMPTS = ["hello there", "a longer prompt than the first one", "abc"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lines")
    base = make_tiny_causal_lm(root / "base")
    return {
        "base": base,
        "support": make_tiny_adapter(base, root / "support", seed=1, version="v-support-1"),
        "search": make_tiny_adapter(base, root / "search", seed=2, version="v-search-1"),
        "support2": make_tiny_adapter(base, root / "support2", seed=3, version="v-support-2"),
        "other_base": make_tiny_causal_lm(root / "other", seed=5),
    }


@pytest.fixture
def served(models: dict[str, Path]) -> Iterator[tuple[InferenceServer, io.StringIO]]:
    stream = io.StringIO()
    generator = Generator.from_model_dir(models["base"])
    metrics = ServingMetrics(stream, endpoint_name="lines", model_version=generator.model_version)
    httpd = make_server(
        generator,
        "127.0.0.1",
        0,
        batch_settings=BatchSettings(max_batch_size=8, wait_ms=300),
        metrics=metrics,
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd, stream
    httpd.shutdown()
    httpd.server_close()


def call(
    httpd: InferenceServer,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=120)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def invoke(
    httpd: InferenceServer, prompt: str, adapter: str | None, max_new_tokens: int = 8
) -> tuple[int, dict[str, Any]]:
    headers = {ADAPTER_HEADER: adapter} if adapter else {}
    body = {"prompt": prompt, "parameters": {"max_new_tokens": max_new_tokens}}
    return call(httpd, "POST", "/invocations", body, headers)


def register(httpd: InferenceServer, name: str, src: Path | str) -> tuple[int, dict[str, Any]]:
    return call(httpd, "POST", "/adapters", {"name": name, "src": str(src)})


def test_each_row_of_a_mixed_batch_gets_its_own_adapter(
    served: tuple[InferenceServer, io.StringIO], models: dict[str, Path]
) -> None:
    # Given a base-model server with two adapters registered
    httpd, stream = served
    assert register(httpd, "support", models["support"]) == (
        200,
        {
            "message": "Adapter support registered",
            "name": "support",
            "model_version": "v-support-1",
        },
    )
    assert register(httpd, "search", models["search"])[0] == 200
    status, listed = call(httpd, "GET", "/adapters")
    assert status == 200
    assert {a["name"]: a["model_version"] for a in listed["adapters"]} == {
        "support": "v-support-1",
        "search": "v-search-1",
    }

    # When requests for both adapters and for the bare base arrive together
    jobs = [(p, a) for p in PROMPTS for a in ("support", "search", None)]
    results: list[tuple[int, dict[str, Any]]] = [(0, {})] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def send(index: int) -> None:
        barrier.wait()
        results[index] = invoke(httpd, *jobs[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Then they shared decode steps, and each got what its own model gives alone
    assert httpd.batcher.peak_rows >= 3
    expected_dirs = {"support": models["support"], "search": models["search"], None: models["base"]}
    for (prompt, adapter), (status, body) in zip(jobs, results, strict=True):
        assert status == 200, body
        assert body["generated_text"] == greedy_answer(expected_dirs[adapter], prompt, 8)
        assert (
            body["model_version"]
            == {
                "support": "v-support-1",
                "search": "v-search-1",
                None: "base",
            }[adapter]
        )
    # And the answers really differ between the lines (the adapters are not no-ops)
    answers = {
        adapter: body["generated_text"]
        for (p, adapter), (_, body) in zip(jobs, results, strict=True)
        if p == PROMPTS[1]
    }
    assert len(set(answers.values())) == 3

    # And every metrics line names the component and version that answered
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_component = {line.get("InferenceComponentName"): line for line in lines}
    assert by_component["support"]["ModelVersion"] == "v-support-1"
    assert by_component["search"]["ModelVersion"] == "v-search-1"
    assert by_component[None]["ModelVersion"] == "base"
    dimensions = by_component["search"]["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert ["EndpointName", "InferenceComponentName"] in dimensions
    assert ["EndpointName", "InferenceComponentName"] not in (
        by_component[None]["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    )


def test_registering_a_name_again_swaps_the_adapter_without_cutting_running_rows(
    served: tuple[InferenceServer, io.StringIO], models: dict[str, Path]
) -> None:
    httpd, _ = served
    assert register(httpd, "support", models["support"])[0] == 200
    long_answer: dict[str, Any] = {}

    def long_request() -> None:
        long_answer.update(invoke(httpd, PROMPTS[0], "support", max_new_tokens=120)[1])

    thread = threading.Thread(target=long_request)
    thread.start()
    deadline = time.monotonic() + 60
    while httpd.batcher.active_rows == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert httpd.batcher.active_rows == 1

    # When the line's next version is registered under the same name mid-answer
    status, body = register(httpd, "support", models["support2"])
    assert (status, body["model_version"]) == (200, "v-support-2")
    status, fresh = invoke(httpd, PROMPTS[1], "support")
    thread.join(timeout=120)

    # Then the running row finished on the old weights, new requests get the new ones
    assert long_answer["model_version"] == "v-support-1"
    assert long_answer["generated_text"] == greedy_answer(models["support"], PROMPTS[0], 120)
    assert (status, fresh["model_version"]) == (200, "v-support-2")
    assert fresh["generated_text"] == greedy_answer(models["support2"], PROMPTS[1], 8)
    # And the old weights were unloaded once nothing used them
    adapters = httpd.batcher.generator.adapters
    assert adapters is not None
    assert list(adapters.model.peft_config) == [adapters.get("support").slot]


def test_unregistering_stops_a_line_and_the_base_serves_on(
    served: tuple[InferenceServer, io.StringIO], models: dict[str, Path]
) -> None:
    httpd, _ = served
    base_answer = invoke(httpd, PROMPTS[2], None)[1]["generated_text"]
    assert register(httpd, "search", models["search"])[0] == 200
    assert call(httpd, "DELETE", "/adapters/search") == (
        200,
        {"message": "Adapter search unregistered", "name": "search"},
    )
    status, body = invoke(httpd, PROMPTS[2], "search")
    assert status == 404 and "no adapter named 'search'" in body["error"]
    assert call(httpd, "DELETE", "/adapters/search")[0] == 404
    # The last adapter gone, the model is the plain base again and answers as before
    adapters = httpd.batcher.generator.adapters
    assert adapters is not None and not adapters.mixed
    assert invoke(httpd, PROMPTS[2], None)[1]["generated_text"] == base_answer


def test_an_adapter_ships_as_a_tar_gz_too(
    served: tuple[InferenceServer, io.StringIO], models: dict[str, Path], tmp_path: Path
) -> None:
    httpd, _ = served
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in models["search"].iterdir():
            tar.add(path, arcname=path.name)
    assert register(httpd, "search", archive)[0] == 200
    status, body = invoke(httpd, PROMPTS[0], "search")
    assert status == 200
    assert body["generated_text"] == greedy_answer(models["search"], PROMPTS[0], 8)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "-bad-", "src": "x"}, "must be 1-63 letters"),
        ({"name": "ok"}, "'src' must name"),
        ({"name": "ok", "src": "/nowhere/at/all"}, "neither a folder nor a .tar.gz"),
    ],
)
def test_bad_registrations_say_what_is_wrong(
    served: tuple[InferenceServer, io.StringIO], body: dict[str, Any], message: str
) -> None:
    status, answer = call(served[0], "POST", "/adapters", body)
    assert status == 400 and message in answer["error"]


def test_an_adapter_of_another_base_or_a_plain_model_is_refused(
    served: tuple[InferenceServer, io.StringIO], models: dict[str, Path], tmp_path: Path
) -> None:
    httpd, _ = served
    foreign = make_tiny_adapter(models["other_base"], tmp_path / "foreign", seed=4, version="vx")
    status, body = register(httpd, "foreign", foreign)
    assert status == 400 and "was trained on" in body["error"]
    status, body = register(httpd, "plain", models["base"])
    assert status == 400 and "not a TuneLoop adapter folder" in body["error"]
    assert call(httpd, "GET", "/adapters") == (200, {"adapters": []})


def test_a_server_of_one_merged_model_takes_no_adapters(models: dict[str, Path]) -> None:
    generator = Generator.from_model_dir(models["support"])
    httpd = make_server(generator, "127.0.0.1", 0, metrics_stream=io.StringIO())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        status, body = register(httpd, "search", models["search"])
        assert status == 409 and "one merged model" in body["error"]
        status, body = invoke(httpd, PROMPTS[0], "search")
        assert status == 409 and "takes no adapters" in body["error"]
    finally:
        httpd.shutdown()
        httpd.server_close()
