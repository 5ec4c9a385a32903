"""The local Lambda runtime turns Powertools tracing off: there is no X-Ray daemon here."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from tuneloop.local.lambda_runtime import FunctionSpec, LambdaRuntime

HANDLER = """
import os

from aws_lambda_powertools import Tracer

tracer = Tracer()


@tracer.capture_lambda_handler
def handler(event, context):
    return {"disabled": os.environ.get("POWERTOOLS_TRACE_DISABLED"), "tracer": tracer.disabled}
"""


def code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("probe.py", HANDLER)
    return buffer.getvalue()


def test_functions_run_with_powertools_tracing_disabled(tmp_path: Path) -> None:
    # Given a function whose handler is captured by a Powertools Tracer, with the
    # Lambda task root set (where Tracer would otherwise try to send segments)
    runtime = LambdaRuntime(tmp_path, {"LAMBDA_TASK_ROOT": str(tmp_path)})
    spec = FunctionSpec("probe", "probe.handler", code_zip(), {}, 30, 128)
    # When the local runtime invokes it
    invocation = runtime.invoke(spec, {})
    # Then the invocation succeeds with tracing off, and nothing about segments is logged
    assert invocation.ok, invocation.payload
    assert invocation.payload == {"disabled": "true", "tracer": True}
    assert "segment" not in invocation.log.lower()
