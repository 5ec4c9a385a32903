"""Runs deployed Lambda functions on this machine.

Each invocation runs in its own Python process with the function's code asset on
``PYTHONPATH`` and exactly the function's environment variables on top of the emulator's
(endpoint, region, credentials), as on Lambda. A process per call costs ~1 s, and buys
isolation: handlers read ``os.environ``, and a handler whose AWS call makes the emulator
invoke another function synchronously (S3 → EventBridge → SQS → Lambda) cannot deadlock.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_WORKER = Path(__file__).with_name("lambda_worker.py")
_CREDENTIAL_VARIABLES = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}
)


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    code_zip: bytes
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    # The execution role's session (AWS_ACCESS_KEY_ID, ...), as Lambda sets it.
    credentials: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Invocation:
    ok: bool
    payload: Any
    log: str


class LambdaRuntime:
    def __init__(self, work_dir: Path, base_environment: dict[str, str]) -> None:
        self._code_root = work_dir / "lambda-code"
        self._log_root = work_dir / "logs"
        self._base_environment = base_environment
        self._unpack_lock = threading.Lock()
        # The worker runs from a folder of its own (as Lambda's bootstrap does): run from
        # this package's folder, its sibling modules would shadow standard-library ones.
        runtime_dir = work_dir / "lambda-runtime"
        runtime_dir.mkdir(parents=True, exist_ok=True)
        self._bootstrap = runtime_dir / "bootstrap.py"
        shutil.copyfile(_WORKER, self._bootstrap)

    def _code_dir(self, code_zip: bytes) -> Path:
        digest = hashlib.sha256(code_zip).hexdigest()[:16]
        target = self._code_root / digest
        with self._unpack_lock:
            if not target.exists():
                staging = Path(tempfile.mkdtemp(dir=self._code_root.parent))
                with zipfile.ZipFile(io.BytesIO(code_zip)) as archive:
                    archive.extractall(staging)
                self._code_root.mkdir(parents=True, exist_ok=True)
                staging.rename(target)
        return target

    def invoke(self, spec: FunctionSpec, event: Any) -> Invocation:
        code_dir = self._code_dir(spec.code_zip)
        env = dict(self._base_environment)
        env.update(spec.environment)
        env.update(spec.credentials)
        env.update(
            {
                "PYTHONPATH": str(code_dir),
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_seconds),
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "_HANDLER": spec.handler,
                "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here: Tracer is a no-op
            }
        )
        with tempfile.TemporaryDirectory() as scratch:
            event_file = Path(scratch) / "event.json"
            result_file = Path(scratch) / "result.json"
            event_file.write_text(json.dumps(event), encoding="utf-8")
            try:
                completed = subprocess.run(
                    [
                        sys.executable,
                        # By path: the code asset on PYTHONPATH has its own `tuneloop`
                        # package, without `tuneloop.local`.
                        str(self._bootstrap),
                        spec.handler,
                        str(event_file),
                        str(result_file),
                    ],
                    cwd=code_dir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=spec.timeout_seconds + 30,
                    check=False,
                )
                log = completed.stdout + completed.stderr
            except subprocess.TimeoutExpired as exc:
                log = _text(exc.stdout) + _text(exc.stderr)
                return self._record(spec, log, _error("Sandbox.Timedout", "Task timed out"))
            if not result_file.exists():
                message = f"runtime exited with code {completed.returncode}: {log[-2000:]}"
                return self._record(spec, log, _error("Runtime.ExitError", message))
            result = json.loads(result_file.read_text(encoding="utf-8"))
        return self._record(spec, log, Invocation(result["ok"], result["payload"], log))

    def _record(self, spec: FunctionSpec, log: str, invocation: Invocation) -> Invocation:
        self._log_root.mkdir(parents=True, exist_ok=True)
        with open(self._log_root / f"lambda-{spec.name}.log", "a", encoding="utf-8") as out:
            out.write(log)
        return Invocation(invocation.ok, invocation.payload, log)


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _error(error_type: str, message: str) -> Invocation:
    return Invocation(False, {"errorType": error_type, "errorMessage": message}, "")


def subprocess_environment(overrides: dict[str, str]) -> dict[str, str]:
    """The emulator's environment for child processes (functions, jobs, endpoints).

    Without this process's credentials: each child runs with its own role's.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TUNELOOP_TEST_") and k not in _CREDENTIAL_VARIABLES
    }
    env.update(overrides)
    return env
