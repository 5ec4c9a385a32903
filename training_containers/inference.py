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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneloop.serving.engine import GenerationRequest, Generator, RequestError, parse_request

JSON = "application/json"


def model_fn(model_dir: str, context: Any = None) -> Generator:
    return Generator.from_model_dir(Path(model_dir))


def input_fn(input_data: bytes | str, content_type: str = JSON, context: Any = None) -> Any:
    if content_type and content_type.split(";")[0].strip().lower() != JSON:
        raise RequestError(f"content type {content_type!r} is not supported; send {JSON}")
    return parse_request(input_data)


def predict_fn(data: GenerationRequest, model: Generator, context: Any = None) -> dict[str, Any]:
    return model.generate(data)


def output_fn(prediction: dict[str, Any], accept: str = JSON, context: Any = None) -> str:
    return json.dumps(prediction)
