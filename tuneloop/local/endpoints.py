"""Local SageMaker endpoints: each endpoint config is served by a local serving process.

The serving entry point (``training_containers/serve.py``) stands in for the inference
container: it gets the extracted ``model.tar.gz`` as its model directory and a free port.
A blue/green update starts the new process, waits for ``/ping`` and only then shifts traffic
to it (``begin_split``: by weight, step by step, ``tuneloop.local.traffic_split``) and finally
stops the old one (``end_split``), as SageMaker does; a rolled-back update stops the new one.
The process runs with the model's container environment, as SageMaker starts the container.

After each invocation the endpoint hands back the log lines the process wrote meanwhile (its
EMF records become metrics: ``tuneloop.local.emf``) and, for the sampled share, writes the
data capture object (``tuneloop.local.data_capture``).
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.local.data_capture import CaptureSettings, write_capture
from tuneloop.local.iam.credentials import Credentials
from tuneloop.local.s3util import download_object, parse_s3_uri, s3_client
from tuneloop.local.traffic_split import TrafficSplit

SERVE_SCRIPT = Path(__file__).resolve().parents[2] / "training_containers" / "serve.py"
VARIANT_NAME = "AllTraffic"  # the one variant Deploy creates


@dataclass
class ServingProcess:
    endpoint_config_name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    credentials: Credentials | None = None
    capture: CaptureSettings | None = None
    log_offset: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_log_lines(self) -> list[str]:
        """Whole lines the process logged since the last call."""
        with self.lock, open(self.log_path, "rb") as log:
            log.seek(self.log_offset)
            data = log.read()
            end = data.rfind(b"\n") + 1
            self.log_offset += end
        return data[:end].decode("utf-8", errors="replace").splitlines()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class InvokeResult:
    status: int
    body: bytes
    latency_ms: float
    log_lines: tuple[str, ...] = ()
    """What the serving process logged during the invocation (its EMF records)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalEndpoints:
    def __init__(self, work_dir: Path, environment: dict[str, str], ready_timeout: float) -> None:
        self._work_dir = work_dir / "endpoints"
        self._environment = environment
        self._ready_timeout = ready_timeout
        self._serving: dict[str, ServingProcess] = {}  # endpoint name → process
        self._splits: dict[str, TrafficSplit[ServingProcess]] = {}  # updates under way
        self._rollouts: dict[str, list[TrafficSplit[ServingProcess]]] = {}
        self._lock = threading.Lock()
        self._sampler = random.Random()
        self.quiet_failure: str | None = None
        """Test/demo switch: the next serving process started fails quietly in this mode
        (``TUNELOOP_QUIET_FAILURE``: empty, refuse, truncate); consumed by that start."""
        self.crash_next_fleet = False
        """Test/demo switch: the next serving process started passes its health check, then
        its container dies (every request it gets fails); consumed by that start."""

    def start(
        self,
        endpoint_config_name: str,
        model_data_url: str,
        credentials: Credentials | None = None,
        *,
        environment: dict[str, str] | None = None,
        data_capture: dict[str, Any] | None = None,
    ) -> ServingProcess:
        """Start a serving process for a config and wait until it answers /ping.

        ``credentials``: the model's execution role session, which fetches the artifact,
        which the container runs with and which writes the data capture objects.
        ``environment``: the model's container environment; ``data_capture``: the
        config's ``DataCaptureConfig``.
        """
        root = self._work_dir / endpoint_config_name
        model_dir = root / "model"
        if not model_data_url:  # the container loads a base it names (TUNELOOP_BASE_MODEL)
            model_dir.mkdir(parents=True, exist_ok=True)
        elif not model_dir.exists():
            # Download first: a refused download must not leave an empty model behind.
            root.mkdir(parents=True, exist_ok=True)
            bucket, key = parse_s3_uri(model_data_url)
            archive = root / "model.tar.gz"
            download_object(s3_client(credentials), bucket, key, archive)
            model_dir.mkdir()
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(model_dir, filter="data")
        port = _free_port()
        env = dict(self._environment)
        env.update(environment or {})
        env.update(credentials.environment() if credentials else {})
        env.update({"SM_MODEL_DIR": str(model_dir), "PORT": str(port), "HOST": "127.0.0.1"})
        with self._lock:
            quiet, self.quiet_failure = self.quiet_failure, None
        if quiet:
            from tuneloop.watch.quality import QUIET_FAILURE_VARIABLE

            env[QUIET_FAILURE_VARIABLE] = quiet
        log_path = root / "serve.log"
        with open(log_path, "ab") as log:
            offset = log.tell()
            process = subprocess.Popen(
                [sys.executable, str(SERVE_SCRIPT)], env=env, stdout=log, stderr=log
            )
        serving = ServingProcess(
            endpoint_config_name,
            port,
            process,
            log_path,
            credentials=credentials,
            capture=CaptureSettings.from_config(data_capture),
            log_offset=offset,
        )
        self._wait_ready(serving)
        with self._lock:
            crash, self.crash_next_fleet = self.crash_next_fleet, False
        if crash:
            serving.process.kill()
            serving.process.wait()
        return serving

    def _wait_ready(self, serving: ServingProcess) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            if serving.process.poll() is not None:
                raise RuntimeError(
                    f"serving process exited with code {serving.process.returncode}; "
                    f"see {serving.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{serving.url}/ping", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        serving.process.terminate()
        raise RuntimeError(f"serving process not ready after {self._ready_timeout:.0f} s")

    def route(self, endpoint_name: str, serving: ServingProcess) -> None:
        """Send the endpoint's traffic to ``serving``; stop what served it before."""
        with self._lock:
            previous = self._serving.get(endpoint_name)
            self._serving[endpoint_name] = serving
        if previous is not None and previous is not serving:
            stop_process(previous)

    def begin_split(
        self, endpoint_name: str, new: ServingProcess
    ) -> TrafficSplit[ServingProcess] | None:
        """Serve the endpoint from its current fleet and ``new``, by the split's weights
        (the new fleet at 0% until shifted); None when nothing serves the endpoint yet."""
        with self._lock:
            old = self._serving.get(endpoint_name)
            if old is None:
                return None
            split = TrafficSplit(old, new)
            self._splits[endpoint_name] = split
            self._rollouts.setdefault(endpoint_name, []).append(split)
        return split

    def end_split(self, endpoint_name: str, *, keep_new: bool) -> None:
        """The update is over: keep the new fleet (and stop the old) or stop the new."""
        with self._lock:
            split = self._splits.pop(endpoint_name, None)
        if split is None:
            return
        if keep_new:
            self.route(endpoint_name, split.new)
        else:
            stop_process(split.new)

    def rollouts(self, endpoint_name: str) -> list[TrafficSplit[ServingProcess]]:
        """Every update of the endpoint that split traffic, oldest first (with the shares
        the new fleet was at and the requests each fleet received at each)."""
        with self._lock:
            return list(self._rollouts.get(endpoint_name, []))

    def crash(self, endpoint_name: str) -> None:
        """Kill the endpoint's serving process, as a crashing container would die."""
        with self._lock:
            serving = self._serving.get(endpoint_name)
        if serving is None:
            raise KeyError(f"no local endpoint named {endpoint_name!r}")
        serving.process.kill()
        serving.process.wait()

    def invoke(self, endpoint_name: str, body: bytes, content_type: str) -> InvokeResult:
        with self._lock:
            split = self._splits.get(endpoint_name)
            serving = split.pick() if split is not None else self._serving.get(endpoint_name)
        if serving is None:
            return InvokeResult(404, b'{"error": "endpoint has no serving process"}', 0.0)
        return self.invoke_process(serving, endpoint_name, body, content_type)

    def invoke_process(
        self,
        serving: ServingProcess,
        endpoint_name: str,
        body: bytes,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> InvokeResult:
        """One invocation of ``serving`` (the endpoint's fleet, or an inference component's
        process), with its data capture and the log lines it wrote meanwhile."""
        started = time.perf_counter()
        request = urllib.request.Request(
            f"{serving.url}/invocations",
            data=body,
            headers={"Content-Type": content_type or "application/json", **(headers or {})},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                payload = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            payload, status = exc.read(), exc.code
        except (urllib.error.URLError, OSError) as exc:
            payload = json.dumps({"error": f"model container unreachable: {exc}"}).encode()
            status = 500
        latency_ms = (time.perf_counter() - started) * 1000
        if status == 200:
            self._capture(endpoint_name, serving, body, content_type, payload)
        return InvokeResult(status, payload, latency_ms, tuple(serving.new_log_lines()))

    def _capture(
        self,
        endpoint_name: str,
        serving: ServingProcess,
        request: bytes,
        content_type: str,
        response: bytes,
    ) -> None:
        capture = serving.capture
        if capture is None or not capture.sampled(self._sampler):
            return
        try:
            write_capture(
                s3_client(serving.credentials),
                capture,
                endpoint_name=endpoint_name,
                variant_name=VARIANT_NAME,
                request=request,
                request_type=content_type or "application/json",
                response=response,
                response_type="application/json",
            )
        except Exception as exc:  # SageMaker drops a capture it cannot write; serving goes on
            print(f"[local] data capture of {endpoint_name} failed: {exc}", flush=True)

    def stop_all(self) -> None:
        with self._lock:
            processes = list(self._serving.values())
            processes += [split.new for split in self._splits.values()]
            self._serving.clear()
            self._splits.clear()
        for serving in processes:
            stop_process(serving)


def stop_process(serving: ServingProcess) -> None:
    if serving.process.poll() is None:
        serving.process.terminate()
        try:
            serving.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            serving.process.kill()
