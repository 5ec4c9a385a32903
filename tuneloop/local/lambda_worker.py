"""Runs one Lambda invocation in a fresh interpreter (started by ``lambda_runtime``).

Usage: ``python lambda_worker.py HANDLER EVENT_FILE RESULT_FILE``. The
result file receives ``{"ok": true, "payload": ...}`` or the Lambda error shape
``{"ok": false, "payload": {"errorType", "errorMessage", "stackTrace"}}``. stdout and
stderr are the function's log, as on Lambda.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid
from typing import Any


class LocalLambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, timeout_seconds: int) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _resolve(handler: str) -> Any:
    module_name, _, function_name = handler.rpartition(".")
    return getattr(importlib.import_module(module_name), function_name)


def main(argv: list[str]) -> int:
    handler, event_file, result_file = argv
    with open(event_file, encoding="utf-8") as stream:
        event = json.load(stream)
    timeout = int(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "60"))
    try:
        payload = _resolve(handler)(event, LocalLambdaContext(timeout))
        result: dict[str, Any] = {"ok": True, "payload": payload}
    except Exception as exc:  # the Lambda runtime turns any exception into an error payload
        traceback.print_exc()
        result = {
            "ok": False,
            "payload": {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            },
        }
    with open(result_file, "w", encoding="utf-8") as stream:
        json.dump(result, stream, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
