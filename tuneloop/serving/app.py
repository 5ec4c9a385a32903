"""``serve.py``'s logic: load the model from ``SM_MODEL_DIR`` and serve until stopped."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

BASE_MODEL_VARIABLE = "TUNELOOP_BASE_MODEL"


def run(environ: Mapping[str, str] | None = None) -> int:
    """Serve ``SM_MODEL_DIR`` (default /opt/ml/model) on ``HOST:PORT`` (127.0.0.1:8080),
    batching per ``TUNELOOP_MAX_BATCH_SIZE`` (8) and ``TUNELOOP_BATCH_WAIT_MS`` (10), with
    ``TUNELOOP_NUM_THREADS`` torch threads (default: torch's, one per core).

    Quality metrics (docs/monitoring.md): ``TUNELOOP_ENDPOINT_NAME`` and
    ``TUNELOOP_MODEL_VERSION`` (set by Deploy) make each metrics line an EMF record;
    ``TUNELOOP_REFUSAL_PATTERNS`` (JSON list of regexes) overrides the refusal defaults;
    ``TUNELOOP_QUIET_FAILURE`` (``empty``/``refuse``/``truncate``) is a test/demo switch.

    ``TUNELOOP_BASE_MODEL`` (a catalog name, ``hf://`` id, ``s3://`` prefix or folder) serves
    that base model instead of ``SM_MODEL_DIR``: a base inference component, whose adapter
    components are registered later (``tuneloop.serving.adapters``)."""
    env = os.environ if environ is None else environ
    model_dir = Path(env.get("SM_MODEL_DIR") or "/opt/ml/model")
    host = env.get("HOST") or "127.0.0.1"
    try:
        port = int(env.get("PORT") or "8080")
        from tuneloop.serving.batching import BatchSettings
        from tuneloop.watch.quality import (
            ENDPOINT_NAME_VARIABLE,
            MODEL_VERSION_VARIABLE,
            quiet_failure_from_env,
            refusal_patterns_from_env,
        )

        batch_settings = BatchSettings.from_env(env)
        threads = _num_threads(env)
        patterns = refusal_patterns_from_env(env)
        quiet_failure = quiet_failure_from_env(env)
        base_ref = env.get(BASE_MODEL_VARIABLE)
        if base_ref:
            from tuneloop.models.catalog import resolve_model

            model_dir = resolve_model(base_ref)
        if not model_dir.is_dir():  # fail before paying for the torch import
            raise ValueError(f"model folder {str(model_dir)!r} does not exist")
        from tuneloop.serving.engine import Generator
        from tuneloop.serving.http import make_server
        from tuneloop.serving.metrics import ServingMetrics

        if threads:  # e.g. 1 when several servers share a machine's cores
            import torch

            torch.set_num_threads(threads)

        generator = Generator.from_model_dir(
            model_dir,
            model_version=env.get(MODEL_VERSION_VARIABLE) or "",
            quiet_failure=quiet_failure,
        )
        metrics = ServingMetrics(
            endpoint_name=env.get(ENDPOINT_NAME_VARIABLE) or "",
            model_version=generator.model_version,
            refusal_patterns=patterns,
        )
        server = make_server(generator, host, port, batch_settings=batch_settings, metrics=metrics)
    except Exception as exc:
        print(f"serve failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"serving on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _num_threads(env: Mapping[str, str]) -> int:
    text = env.get("TUNELOOP_NUM_THREADS") or "0"
    try:
        threads = int(text)
    except ValueError:
        raise ValueError(f"TUNELOOP_NUM_THREADS must be an integer, got {text!r}") from None
    if threads < 0:
        raise ValueError(f"TUNELOOP_NUM_THREADS must be >= 0, got {threads}")
    return threads
