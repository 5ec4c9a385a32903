"""Handler for the Hugging Face inference Deep Learning Container (SageMaker endpoints).

The training job copies this file and the ``tuneloop`` package into ``<model dir>/code/``,
so ``model.tar.gz`` is self-contained: the DLC's inference toolkit puts ``code/`` on
``sys.path`` and calls the four hooks below. There is no ``code/requirements.txt``, so the
toolkit installs nothing at start-up: the code runs on the image's own packages, listed in
``requirements-serving.txt``. The hooks delegate to ``tuneloop.serving`` — the same
validation and generation as ``serve.py`` — so the endpoint speaks the contract of
docs/contracts.md:

- ``model_fn(model_dir)``: load the adapter folder (base resolved via the catalog, adapter
  merged) or a plain model folder → a ``Generator``.
- ``input_fn(body, content_type)``: JSON only; ``{"prompt"}`` or ``{"messages"}`` plus
  ``"parameters"`` → a ``GenerationRequest``; a malformed body raises ``ValueError``, which
  the toolkit answers with HTTP 400 and the message.
- ``predict_fn(request, generator)`` → ``{"generated_text", "prompt_tokens",
  "completion_tokens", "latency_ms", "model_version"}``.
- ``output_fn(prediction, accept)`` → the JSON string.

Every prediction also writes the metrics line of ``tuneloop.serving.metrics`` (an EMF record
of ``TuneLoop/Endpoint`` quality metrics, docs/monitoring.md) to stdout, which SageMaker
ships to the endpoint's log group, as ``serve.py`` does.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tuneloop.serving.engine import GenerationRequest, Generator, RequestError, parse_request
from tuneloop.serving.metrics import ServingMetrics
from tuneloop.watch.quality import (
    ENDPOINT_NAME_VARIABLE,
    MODEL_VERSION_VARIABLE,
    quiet_failure_from_env,
    refusal_patterns_from_env,
)

JSON = "application/json"


_metrics: ServingMetrics | None = None


def model_fn(model_dir: str, context: Any = None) -> Generator:
    global _metrics
    generator = Generator.from_model_dir(
        Path(model_dir),
        model_version=os.environ.get(MODEL_VERSION_VARIABLE, ""),
        quiet_failure=quiet_failure_from_env(os.environ),
    )
    _metrics = ServingMetrics(
        endpoint_name=os.environ.get(ENDPOINT_NAME_VARIABLE, ""),
        model_version=generator.model_version,
        refusal_patterns=refusal_patterns_from_env(os.environ),
    )
    return generator


def input_fn(input_data: bytes | str, content_type: str = JSON, context: Any = None) -> Any:
    if content_type and content_type.split(";")[0].strip().lower() != JSON:
        raise RequestError(f"content type {content_type!r} is not supported; send {JSON}")
    return parse_request(input_data)


def predict_fn(data: GenerationRequest, model: Generator, context: Any = None) -> dict[str, Any]:
    started = time.monotonic()
    try:
        prediction = model.generate(data)
    except Exception as exc:
        if _metrics is not None:
            status = 400 if isinstance(exc, RequestError) else 500
            _metrics.record(status=status, latency_ms=(time.monotonic() - started) * 1000)
        raise
    if _metrics is not None:
        # The hooks see no finish reason: an answer as long as its limit hit the limit.
        limit = model.decode_row(data, []).max_new_tokens
        _metrics.record(
            status=200,
            latency_ms=(time.monotonic() - started) * 1000,
            prompt_tokens=prediction["prompt_tokens"],
            completion_tokens=prediction["completion_tokens"],
            generated_text=prediction["generated_text"],
            finish_reason="length" if prediction["completion_tokens"] >= limit else "eos",
        )
    return prediction


def output_fn(prediction: dict[str, Any], accept: str = JSON, context: Any = None) -> str:
    return json.dumps(prediction)
