"""A minimal client for the serving tests (POST /invocations to an in-process server) and
the reference answer a model gives alone."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from tuneloop.models.loading import load_model_dir
from tuneloop.serving.engine import Generator, parse_request
from tuneloop.serving.http import InferenceServer


def post(httpd: InferenceServer, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=60)
    try:
        conn.request("POST", "/invocations", body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def greedy_answer(model_dir: Path, prompt: str, max_new_tokens: int) -> str:
    """The greedy answer of ``model_dir`` alone (an unmerged adapter: the same arithmetic)."""
    model, tokenizer = load_model_dir(model_dir, merge=False)
    generator = Generator(model, tokenizer, "reference")
    request = parse_request({"prompt": prompt, "parameters": {"max_new_tokens": max_new_tokens}})
    return str(generator.generate(request)["generated_text"])
