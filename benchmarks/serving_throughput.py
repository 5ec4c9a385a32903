"""Serving throughput: the batching HTTP server against a one-request-at-a-time loop.

The baseline is the plain way to serve a model: a loop that tokenizes one prompt, calls
``model.generate`` and decodes, request after request. Ours is ``tuneloop.serving``'s server,
started in this process on a free loopback port, answering the same greedy requests sent by
1, 4 and 16 concurrent clients (continuous batching: a request joins the running batch at
the next decode step). The baseline
and the levels run interleaved (baseline, 1, 4, 16, baseline, 1, ...) for ``--repeats``
rounds, so a change in machine load hits both alike; each level's ratio is taken against its
own round's baseline and the median over rounds is printed, with median tokens/s and
p50/p95 latency as the client sees it. Tokens per CPU second of the whole process (clients
included, so ours pays for the HTTP round trips) are printed too: on a machine shared with
other work they vary far less than wall-clock rates. For ours, the share of the generation
worker's time spent prefilling newcomers and the mean rows per decode step are printed
(``Batcher.times``); ``serving_step_cost.py`` gives the step costs to set them against::

    .venv/bin/python benchmarks/serving_throughput.py --threads 1 --repeats 3  # SmolLM2-135M
    .venv/bin/python benchmarks/serving_throughput.py --tiny   # a tiny random model, seconds

``--stream`` also sends every level's requests with ``"stream": true`` and prints the
median time to the first token line next to the time to the full response.

``--threads`` sets torch's intra-op threads for both sides (on a shared machine one thread
avoids the spinning of oversubscribed OpenMP threads).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tuneloop.serving.batching import BatchSettings, WorkerTimes  # noqa: E402
from tuneloop.serving.engine import Generator  # noqa: E402
from tuneloop.serving.http import InferenceServer, make_server  # noqa: E402

MODEL = "smollm2-135m-instruct"
QUESTIONS = [
    "Where is my order?",
    "How do I reset my password?",
    "Can I get a refund for a damaged item?",
    "What does the warranty cover?",
    "How long does shipping take to Canada?",
    "Why was my card charged twice?",
    "Can I change the delivery address after ordering?",
    "How do I close my account?",
]


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    completion_tokens: int
    latencies_ms: list[float]
    cpu_seconds: float
    """CPU time of this whole process during the run (server, worker and client threads)."""
    first_token_ms: list[float] | None = None
    """Streamed runs: when each client got its first token line."""
    worker: WorkerTimes | None = None
    """Ours: where the generation worker's time went during the run."""

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.completion_tokens / self.cpu_seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def first_token_p50(self) -> float:
        assert self.first_token_ms is not None
        return statistics.median(self.first_token_ms)

    def prefill_share(self) -> float:
        assert self.worker is not None
        busy = self.worker.admit_seconds + self.worker.step_seconds
        return self.worker.admit_seconds / busy if busy else 0.0

    def mean_rows(self) -> float:
        assert self.worker is not None
        return self.worker.row_steps / max(1, self.worker.steps)

    def line(self) -> str:
        first = (
            f"   first token p50 {self.first_token_p50():8.1f} ms"
            if self.first_token_ms is not None
            else ""
        )
        worker = (
            f"; worker: prefill {self.prefill_share():.0%} of its time,"
            f" {self.worker.steps} steps of {self.mean_rows():.1f} rows on average"
            if self.worker is not None
            else ""
        )
        return (
            f"{self.name:<28} {self.tokens_per_s:9.1f} tok/s   p50 {self.percentile(0.5):8.1f} ms"
            f"   p95 {self.percentile(0.95):8.1f} ms{first}   ({self.completion_tokens} tokens,"
            f" {len(self.latencies_ms)} requests, {self.seconds:.1f} s,"
            f" {self.cpu_seconds:.1f} CPU s{worker})"
        )


CONTEXT = "I ordered a blue kettle last Tuesday with express delivery to my office. "
BUDGET_SHARES = (1.0, 0.25, 0.75, 0.5)  # varied answer budgets: rows end at different steps


def payloads(count: int, max_new_tokens: int) -> list[dict[str, Any]]:
    """Varied prompts (every third one carries extra context) and varied token budgets."""
    return [
        {
            "messages": [
                {
                    "role": "user",
                    "content": CONTEXT * (i % 3 == 2) + QUESTIONS[i % len(QUESTIONS)],
                }
            ],
            "parameters": {
                "max_new_tokens": max(1, round(max_new_tokens * BUDGET_SHARES[i % 4])),
                "temperature": 0,
            },
        }
        for i in range(count)
    ]


def baseline_loop(generator: Generator, requests: list[dict[str, Any]]) -> Run:
    """Plain ``generate``, one request after the other (no server, no batching)."""
    from tuneloop.training.chat import render_chat

    tokenizer, model = generator.tokenizer, generator.model
    latencies, tokens = [], 0
    started, cpu_started = time.monotonic(), time.process_time()
    for payload in requests:
        begun = time.monotonic()
        text = render_chat(tokenizer, payload["messages"], add_generation_prompt=True)
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                max_new_tokens=payload["parameters"]["max_new_tokens"],
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = output[0, encoded["input_ids"].shape[1] :].tolist()
        if new and new[-1] == tokenizer.eos_token_id:
            new = new[:-1]
        tokenizer.decode(new, skip_special_tokens=True)
        tokens += len(new)
        latencies.append((time.monotonic() - begun) * 1000)
    return Run(
        "baseline: generate loop",
        time.monotonic() - started,
        tokens,
        latencies,
        time.process_time() - cpu_started,
    )


def worker_times(httpd: InferenceServer, before: WorkerTimes) -> WorkerTimes:
    """The worker's times since ``before`` (a copy taken before the run), once its last step
    is counted."""
    batcher = httpd.batcher
    deadline = time.monotonic() + 10
    while batcher.active_rows and time.monotonic() < deadline:
        time.sleep(0.001)
    now = batcher.times
    return WorkerTimes(
        now.admit_seconds - before.admit_seconds,
        now.step_seconds - before.step_seconds,
        now.steps - before.steps,
        now.row_steps - before.row_steps,
    )


def served(httpd: InferenceServer, requests: list[dict[str, Any]], concurrency: int) -> Run:
    port = int(httpd.server_address[1])

    def send(payload: dict[str, Any]) -> tuple[float, int]:
        begun = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            conn.request("POST", "/invocations", body=json.dumps(payload).encode())
            response = conn.getresponse()
            body = json.loads(response.read())
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"server answered {response.status}: {body}")
        return (time.monotonic() - begun) * 1000, int(body["completion_tokens"])

    before = replace(httpd.batcher.times)
    started, cpu_started = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(send, requests))
    seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    return Run(
        f"ours: server, concurrency {concurrency}",
        seconds,
        sum(tokens for _, tokens in results),
        [latency for latency, _ in results],
        cpu_seconds,
        worker=worker_times(httpd, before),
    )


def streamed(httpd: InferenceServer, requests: list[dict[str, Any]], concurrency: int) -> Run:
    """The same requests with ``"stream": true``: time to the first token line and to the
    last line, as the client reads them."""
    port = int(httpd.server_address[1])

    def send(payload: dict[str, Any]) -> tuple[float, float, int]:
        begun = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        first_ms, last = 0.0, {}
        try:
            conn.request("POST", "/invocations", body=json.dumps({**payload, "stream": True}))
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"server answered {response.status}: {response.read()!r}")
            for raw in response:
                line = json.loads(raw)
                if "token" in line:
                    first_ms = first_ms or (time.monotonic() - begun) * 1000
                else:
                    last = line
        finally:
            conn.close()
        return first_ms, (time.monotonic() - begun) * 1000, int(last["completion_tokens"])

    started, cpu_started = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(send, requests))
    return Run(
        f"ours: streamed, conc. {concurrency}",
        time.monotonic() - started,
        sum(tokens for _, _, tokens in results),
        [latency for _, latency, _ in results],
        time.process_time() - cpu_started,
        [first for first, _, _ in results],
    )


def load(tiny: bool) -> Generator:
    if tiny:
        sys.path.insert(0, str(ROOT / "tests" / "unit"))
        from tiny_models import make_tiny_causal_lm

        return Generator.from_model_dir(make_tiny_causal_lm(Path(tempfile.mkdtemp()) / "tiny"))
    from tuneloop.models.catalog import resolve_model

    return Generator.from_model_dir(resolve_model(MODEL))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="a tiny random model, not SmolLM2")
    parser.add_argument("--requests", type=int, default=16, help="requests per level (16)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--levels", default="1,4,16", help="client concurrency levels")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--stream", action="store_true", help="also stream each level: time to first token"
    )
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"loading {'a tiny model' if args.tiny else MODEL} ...", flush=True)
    generator = load(args.tiny)
    requests = payloads(args.requests, args.max_new_tokens)
    settings = BatchSettings(max_batch_size=max(8, max(levels)), wait_ms=10)
    # The per-request metrics lines would drown the report.
    metrics_sink = open(os.devnull, "w")  # noqa: SIM115 (closed in the finally below)
    httpd = make_server(
        generator,
        "127.0.0.1",
        0,
        batch_settings=settings,
        metrics_stream=metrics_sink,
        access_log=False,
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("warm-up ...", flush=True)
    baseline_loop(generator, requests[:2])
    served(httpd, requests[:2], 2)
    rounds: list[tuple[Run, list[Run]]] = []
    stream_runs: dict[int, list[Run]] = {}
    try:
        for repeat in range(args.repeats):
            print(f"round {repeat + 1}/{args.repeats}", flush=True)
            baseline = baseline_loop(generator, requests)
            print("  " + baseline.line(), flush=True)
            runs = []
            for level in levels:
                run = served(httpd, requests, level)
                print("  " + run.line(), flush=True)
                runs.append(run)
                if args.stream:
                    run = streamed(httpd, requests, level)
                    print("  " + run.line(), flush=True)
                    stream_runs.setdefault(level, []).append(run)
            rounds.append((baseline, runs))
    finally:
        httpd.shutdown()
        httpd.server_close()
        metrics_sink.close()
    print(
        f"\nmax batch size {settings.max_batch_size}, batch wait {settings.wait_ms} ms, "
        f"torch threads {torch.get_num_threads()}, {len(requests)} requests x "
        f"up to {args.max_new_tokens} new tokens (varied) per level, "
        f"median of {args.repeats} rounds"
    )
    median = statistics.median
    baselines = [baseline for baseline, _ in rounds]
    print(
        f"{'baseline: generate loop':<28} {median(b.tokens_per_s for b in baselines):9.1f} tok/s"
        f"   p50 {median(b.percentile(0.5) for b in baselines):8.1f} ms"
        f"   p95 {median(b.percentile(0.95) for b in baselines):8.1f} ms"
    )
    for position in range(len(levels)):
        level_runs = [runs[position] for _, runs in rounds]
        ratios = [runs[position].tokens_per_s / baseline.tokens_per_s for baseline, runs in rounds]
        cpu_ratios = [
            runs[position].tokens_per_cpu_s / baseline.tokens_per_cpu_s for baseline, runs in rounds
        ]
        print(
            f"{level_runs[0].name:<28} {median(r.tokens_per_s for r in level_runs):9.1f} tok/s"
            f"   p50 {median(r.percentile(0.5) for r in level_runs):8.1f} ms"
            f"   p95 {median(r.percentile(0.95) for r in level_runs):8.1f} ms"
            f"   throughput ours / baseline = {median(ratios):.2f}x"
            f" (rounds: {', '.join(f'{r:.2f}' for r in ratios)});"
            f" tokens per CPU second = {median(cpu_ratios):.2f}x;"
            f" worker: prefill {median(r.prefill_share() for r in level_runs):.0%} of its time,"
            f" {median(r.mean_rows() for r in level_runs):.1f} rows per step"
        )
    p50_at_1 = median(runs[0].percentile(0.5) for _, runs in rounds) if levels[0] == 1 else None
    if p50_at_1:
        for position, level in enumerate(levels[1:], start=1):
            ratio = median(runs[position].percentile(0.5) for _, runs in rounds) / p50_at_1
            print(f"p50 latency at concurrency {level} / at concurrency 1 = {ratio:.2f}x")
    for level_runs in stream_runs.values():
        print(
            f"{level_runs[0].name:<28} {median(r.tokens_per_s for r in level_runs):9.1f} tok/s"
            f"   first token p50 {median(r.first_token_p50() for r in level_runs):8.1f} ms"
            f"   full response p50 {median(r.percentile(0.5) for r in level_runs):8.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
