"""The local platform: synthesize, deploy into the emulator, and drive the loop.

`tuneloop demo` and the end-to-end tests use this: it holds no logic of the product, only
the operations a platform team would do by hand against AWS (drop files, wait for a run,
call the endpoint) plus the emulator's own controls (crash an endpoint's container).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tuneloop import stack_outputs as out
from tuneloop.local.deployer import Deployment, cdk_environment, deploy_assembly
from tuneloop.local.emulator import Emulator, EnforcerFactory, policy_enforcer

REPO_ROOT = Path(__file__).resolve().parents[2]
Log = Callable[[str], None]
PLATFORM_OUTPUTS = {
    "raw_bucket": out.RAW_BUCKET,
    "artifacts_bucket": out.ARTIFACTS_BUCKET,
    "curated_bucket": out.CURATED_BUCKET,
    "state_machine_arn": out.STATE_MACHINE,
    "endpoint_name": out.ENDPOINT_NAME,
    "records_table": out.RECORDS_TABLE,
    "drops_table": out.DROPS_TABLE,
    "control_table": out.CONTROL_TABLE,
    "model_versions_table": out.MODEL_VERSIONS_TABLE,
}
""":class:`Resources` field → the stack output it is read from."""


class PlatformError(RuntimeError):
    """A stage of the loop did not do what it should; the message says which and why."""


def synth(outdir: Path, context: dict[str, str]) -> Path:
    """Run the CDK app (as `cdk synth` does) into ``outdir``; return the assembly folder."""
    env = cdk_environment()
    env["CDK_OUTDIR"] = str(outdir)
    env["CDK_CONTEXT_JSON"] = json.dumps(context)
    completed = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise PlatformError(f"cdk synth failed:\n{completed.stderr[-4000:]}")
    return outdir


@dataclass(frozen=True)
class Resources:
    """Names of what the stacks created, read from the stacks' outputs (as the CLI and an
    operator find them on AWS)."""

    raw_bucket: str
    artifacts_bucket: str
    curated_bucket: str
    state_machine_arn: str
    endpoint_name: str
    records_table: str
    drops_table: str
    control_table: str
    model_versions_table: str

    @classmethod
    def discover(cls, deployment: Deployment) -> Resources:
        outputs = {
            output: value
            for stack in deployment.stacks.values()
            for output, value in stack.outputs.items()
        }
        missing = sorted(set(PLATFORM_OUTPUTS.values()) - set(outputs))
        if missing:
            raise PlatformError(f"the deployed stacks have no output {', '.join(missing)}")
        return cls(**{name: outputs[output] for name, output in PLATFORM_OUTPUTS.items()})


@dataclass
class StateTiming:
    name: str
    seconds: float
    status: str


@dataclass
class RunResult:
    execution_arn: str
    name: str
    status: str
    output: dict[str, Any]
    error: str
    cause: str
    states: list[StateTiming] = field(default_factory=list)


class LocalPlatform:
    def __init__(
        self,
        work_dir: Path,
        *,
        context: dict[str, str],
        log: Log = print,
        on_job_log: Callable[[str, str], None] | None = None,
        enforce_permissions: bool | None = None,
        make_enforcer: EnforcerFactory = policy_enforcer,
    ) -> None:
        self.work_dir = work_dir
        self.context = context
        self.log = log
        self.emulator = Emulator(
            work_dir / "emulator",
            on_job_log=on_job_log,
            enforce_permissions=enforce_permissions,
            make_enforcer=make_enforcer,
        )
        self.deployment: Deployment | None = None
        self._resources: Resources | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> LocalPlatform:
        self.emulator.start()
        return self

    def stop(self) -> None:
        self.emulator.stop()

    def deploy(self, assembly: Path | None = None) -> Resources:
        if assembly is None:
            assembly = synth(self.work_dir / "cdk.out", self.context)
        self.deployment = deploy_assembly(assembly, log=self.log)
        self._resources = Resources.discover(self.deployment)
        return self._resources

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            raise PlatformError("the platform is not deployed yet")
        return self._resources

    # -- data ------------------------------------------------------------------------
    def drop_files(self, files: Iterable[Path], dataset: str) -> list[str]:
        """Upload files as a data drop; ingestion runs as the emulator delivers the events."""
        s3 = boto3.client("s3")
        keys = []
        for path in files:
            key = f"drops/{dataset}/{path.name}"
            s3.upload_file(str(path), self.resources.raw_bucket, key)
            keys.append(key)
        return keys

    def upload_benchmarks(self, files: Iterable[Path]) -> list[str]:
        s3 = boto3.client("s3")
        keys = []
        for path in files:
            key = f"benchmarks/{path.name}"
            s3.upload_file(str(path), self.resources.artifacts_bucket, key)
            keys.append(key)
        return keys

    def drops(self) -> list[dict[str, Any]]:
        table = boto3.resource("dynamodb").Table(self.resources.drops_table)
        return list(table.scan()["Items"])

    def control_item(self, key: str) -> dict[str, Any] | None:
        table = boto3.resource("dynamodb").Table(self.resources.control_table)
        item = table.get_item(Key={"key": key}).get("Item")
        return dict(item) if item else None

    def model_version(self, version: str) -> dict[str, Any] | None:
        table = boto3.resource("dynamodb").Table(self.resources.model_versions_table)
        item = table.get_item(Key={"model_version": version}).get("Item")
        return dict(item) if item else None

    def read_json(self, s3_uri: str) -> Any:
        bucket, _, key = s3_uri[len("s3://") :].partition("/")
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return json.loads(body)

    # -- runs ------------------------------------------------------------------------
    def executions(self) -> list[dict[str, Any]]:
        sfn: Any = boto3.client("stepfunctions")
        return list(
            sfn.list_executions(stateMachineArn=self.resources.state_machine_arn)["executions"]
        )

    def wait_for_new_run(self, known: set[str], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for execution in self.executions():
                if execution["executionArn"] not in known:
                    return str(execution["executionArn"])
            time.sleep(0.2)
        raise PlatformError(f"no retrain run started within {timeout:.0f} s")

    def follow_run(self, execution_arn: str, timeout: float = 1800) -> RunResult:
        """Wait for a run to end, logging each state as it starts and ends."""
        sfn: Any = boto3.client("stepfunctions")
        seen = 0
        entered: dict[str, float] = {}
        timings: list[StateTiming] = []
        deadline = time.monotonic() + timeout
        while True:
            # The status first, then the history: once it has ended, its history is whole.
            described = sfn.describe_execution(executionArn=execution_arn)
            events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)[
                "events"
            ]
            for event in events[seen:]:
                self._on_event(event, entered, timings)
            seen = len(events)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise PlatformError(f"run {execution_arn} still running after {timeout:.0f} s")
            time.sleep(0.3)
        return RunResult(
            execution_arn=execution_arn,
            name=str(described["name"]),
            status=str(described["status"]),
            output=json.loads(described.get("output") or "{}"),
            error=str(described.get("error", "")),
            cause=str(described.get("cause", "")),
            states=timings,
        )

    def _on_event(
        self, event: dict[str, Any], entered: dict[str, float], timings: list[StateTiming]
    ) -> None:
        kind = event["type"]
        stamp = event["timestamp"].timestamp()
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            entered[name] = stamp
            self.log(f"  → {name}")
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            seconds = stamp - entered.get(name, stamp)
            timings.append(StateTiming(name, seconds, "ok"))
        elif kind in {"TaskFailed", "LambdaFunctionFailed", "ExecutionFailed"}:
            details: dict[str, Any] = next(
                (v for k, v in event.items() if k.endswith("EventDetails")), {}
            )
            self.log(
                f"  ✗ {kind}: {details.get('error', '')} {str(details.get('cause', ''))[:300]}"
            )

    # -- serving ---------------------------------------------------------------------
    def endpoint(self) -> dict[str, Any]:
        sagemaker = boto3.client("sagemaker")
        return dict(sagemaker.describe_endpoint(EndpointName=self.resources.endpoint_name))

    def invoke(self, prompt: str, max_new_tokens: int = 48) -> dict[str, Any]:
        runtime = boto3.client("sagemaker-runtime")
        body = {
            "messages": [{"role": "user", "content": prompt}],
            "parameters": {"max_new_tokens": max_new_tokens},
        }
        response = runtime.invoke_endpoint(
            EndpointName=self.resources.endpoint_name,
            ContentType="application/json",
            Body=json.dumps(body).encode(),
        )
        return dict(json.loads(response["Body"].read()))

    def crash_endpoint(self) -> None:
        self.emulator.endpoints.crash(self.resources.endpoint_name)

    def wait_for_endpoint(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.endpoint()
            if predicate(described):
                return described
            time.sleep(0.5)
        raise PlatformError(f"endpoint did not reach the expected state within {timeout:.0f} s")


def default_work_dir() -> Path:
    return Path(os.environ.get("TUNELOOP_LOCAL_DIR", REPO_ROOT / ".tuneloop" / "local"))
