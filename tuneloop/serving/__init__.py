"""Model serving: request validation and generation (``engine``), dynamic batching of
concurrent requests (``batching``), per-request metrics lines (``metrics``) and the HTTP server
(``http``) used by ``serve.py``; ``inference.py`` wraps the same engine for the Hugging Face DLC.
"""

from tuneloop.serving.engine import GenerationRequest, Generator, RequestError, parse_request

__all__ = ["GenerationRequest", "Generator", "RequestError", "parse_request"]
