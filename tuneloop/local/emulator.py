"""The embedded AWS emulator: moto in server mode on loopback, inside this process.

Running moto's ThreadedMotoServer in the platform's own process is what lets the patches
in ``gaps`` apply: Lambda functions, SageMaker jobs and endpoints, and Step Functions'
SageMaker tasks run for real on this machine. Every client — this process's, the Lambda
processes', the jobs' — reaches the emulator through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from tuneloop.local import gaps
from tuneloop.local.alarms import AlarmEvaluator
from tuneloop.local.autoscaling import ScalingEmulator
from tuneloop.local.endpoints import LocalEndpoints
from tuneloop.local.iam import enforce
from tuneloop.local.iam.credentials import CredentialRegistry
from tuneloop.local.iam.usage import Recorder, RoleReport
from tuneloop.local.inference_components import LocalInferenceComponents
from tuneloop.local.jobs import LocalJobRunner, LogCallback
from tuneloop.local.lambda_runtime import LambdaRuntime, subprocess_environment

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
ENFORCE_VARIABLE = "TUNELOOP_ENFORCE_IAM"
"""``0`` turns permission enforcement off (decisions are still logged and recorded)."""

EnforcerFactory = Callable[[CredentialRegistry, bool, Path], enforce.Enforcer]


def enforcement_default() -> bool:
    return os.environ.get(ENFORCE_VARIABLE, "1").strip().lower() not in {"0", "false", "off", "no"}


def policy_enforcer(
    registry: CredentialRegistry, enabled: bool, log_path: Path
) -> enforce.Enforcer:
    """The enforcer over the deployed policies: moto's backends, every decision recorded."""
    from tuneloop.local.iam.moto_store import MotoPolicyStore

    return enforce.Enforcer(
        registry=registry,
        store=MotoPolicyStore(),
        recorder=Recorder(),
        enabled=enabled,
        log_path=log_path,
        on_denied=lambda denial: print(
            f"[local] AccessDenied: {denial.operation} by {denial.caller}: {denial.message}",
            flush=True,
        ),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Emulator:
    """Start with ``with Emulator(work_dir) as aws: ...``; stops servers and processes on exit."""

    def __init__(
        self,
        work_dir: Path,
        *,
        on_job_log: LogCallback | None = None,
        endpoint_ready_timeout: float = 600.0,
        alarm_interval_seconds: float = 1.0,
        scaling_window_seconds: float = 60.0,
        enforce_permissions: bool | None = None,
        make_enforcer: EnforcerFactory = policy_enforcer,
    ) -> None:
        self.work_dir = work_dir
        self.port = _free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._on_job_log = on_job_log
        self._endpoint_ready_timeout = endpoint_ready_timeout
        self.credentials = CredentialRegistry(ACCOUNT_ID, REGION)
        self.enforcer = make_enforcer(
            self.credentials,
            enforcement_default() if enforce_permissions is None else enforce_permissions,
            work_dir / "logs" / "denials.jsonl",
        )
        self.alarms = AlarmEvaluator(alarm_interval_seconds, credentials=self.credentials)
        # Target tracking of endpoint variants, decided from the endpoints' metrics.
        self.scaling = ScalingEmulator(window_seconds=scaling_window_seconds)
        self._server: object | None = None
        self._saved_environ: dict[str, str | None] = {}
        self._local: gaps.LocalServices | None = None

    @property
    def client_environment(self) -> dict[str, str]:
        """This process's clients: the operator, the account's admin."""
        return {**self._service_environment, **self.credentials.operator.environment()}

    @property
    def _service_environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            # moto's Step Functions interpreter calls services at localhost:MOTO_PORT.
            "MOTO_PORT": str(self.port),
        }

    def start(self) -> Emulator:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        # The emulator's request log and moto's notes on what it skips are not the
        # platform's output; failures surface through the APIs and the platform's logs.
        # (The ASL interpreter logs every caught task failure as an error: the execution
        # history already tells those.)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", module=r"moto\.")

        self.work_dir.mkdir(parents=True, exist_ok=True)
        for key, value in self.client_environment.items():
            self._saved_environ[key] = os.environ.get(key)
            os.environ[key] = value
        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        # Functions, jobs and endpoints get their role's credentials, never the operator's.
        child_env = subprocess_environment(self._service_environment)
        endpoints = LocalEndpoints(self.work_dir, child_env, self._endpoint_ready_timeout)
        self._local = gaps.LocalServices(
            lambdas=LambdaRuntime(self.work_dir, child_env),
            jobs=LocalJobRunner(self.work_dir, child_env, on_log=self._on_job_log),
            endpoints=endpoints,
            alarms=self.alarms,
            components=LocalInferenceComponents(self.work_dir, endpoints),
        )
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self._server = server
        # Backends live for the whole process: start every platform from a clean slate.
        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        ).close()
        # Only then the patches and the enforcer: a call made before the reset (an execution
        # of an earlier test ending in moto's interpreter threads, say) would set up
        # credentials in backends the reset then empties.
        gaps.install(self._local)
        enforce.install(self.enforcer)
        self.alarms.start()
        self.scaling.start()
        return self

    def permission_report(self) -> list[RoleReport]:
        """Per role of the account: the grants the run exercised and those it never did."""
        from moto.iam.models import iam_backends

        recorder = getattr(self.enforcer, "recorder", None)
        if not isinstance(recorder, Recorder):
            return []
        roles = sorted(role.arn for role in iam_backends[ACCOUNT_ID]["aws"].roles.values())
        return recorder.report(self.enforcer.store, roles)

    @property
    def endpoints(self) -> LocalEndpoints:
        assert self._local is not None, "emulator not started"
        return self._local.endpoints

    def stop(self) -> None:
        self.scaling.stop()
        self.alarms.stop()
        gaps.uninstall()
        enforce.uninstall()
        if self._local is not None:
            self._local.endpoints.stop_all()
            if self._local.components is not None:
                self._local.components.stop_all()
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None
        for key, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
