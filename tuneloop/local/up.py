"""`tuneloop up`: the local platform, kept running: emulator, deployed stacks, the console.

It deploys the CDK app's ``local`` stage into the embedded emulator (as ``tuneloop demo``
does), starts the web console as its own process under the Console stack's role (the local
platform enforces that role's permissions, as AWS would the Lambda's), prints what to export
so that ``tuneloop``, boto3 and the AWS CLI talk to it, and waits until interrupted. State
lives in memory: every ``tuneloop up`` starts from an empty platform.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop import stack_outputs as out
from tuneloop.local.console_server import PLATFORM_NAMES_ENV
from tuneloop.local.lambda_runtime import subprocess_environment
from tuneloop.local.platform import REPO_ROOT, LocalPlatform, PlatformError
from tuneloop.operations.names import PlatformNames

EXAMPLES = REPO_ROOT / "examples"
ROLES = ("viewer", "operator", "admin")
USERS_FILE = "console-users.json"
CONSOLE_LOG = "console.log"
STAGE = "local"
# The console answers /healthz once its app is built; the first import of FastAPI and the
# templates takes a few seconds on a busy machine.
CONSOLE_START_TIMEOUT = 60.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class Login:
    username: str
    role: str
    password: str


def generate_logins() -> list[Login]:
    """One local user per role, each with a fresh random password."""
    return [Login(role, role, secrets.token_urlsafe(12)) for role in ROLES]


def write_logins(path: Path, logins: list[Login]) -> None:
    """The console process reads its users from here; only this user may read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    users = {login.username: {"role": login.role, "password": login.password} for login in logins}
    path.write_text(json.dumps(users, indent=1), encoding="utf-8")


def free_port(preferred: int) -> int:
    """``preferred`` if it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise PlatformError("no free port on 127.0.0.1")


class ConsoleProcess:
    """The console server, a child process with the console role's credentials."""

    def __init__(self, work_dir: Path, env: dict[str, str], port: int, users_file: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = work_dir / CONSOLE_LOG
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuneloop.local.console_server",
                "--port",
                str(port),
                "--users",
                str(users_file),
                "--stage",
                STAGE,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = CONSOLE_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PlatformError(
                    f"the console exited with {self._process.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                )
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise PlatformError(
            f"the console did not answer within {timeout:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._log.close()


def console_environment(platform: LocalPlatform) -> dict[str, str]:
    """The console process's environment: the emulator's endpoint and the console role."""
    assert platform.deployment is not None
    outputs = {
        key: value
        for stack in platform.deployment.stacks.values()
        for key, value in stack.outputs.items()
    }
    role_arn = outputs.get(out.CONSOLE_ROLE)
    if not role_arn:
        raise PlatformError(f"the deployed stacks have no output {out.CONSOLE_ROLE}")
    emulator = platform.emulator
    credentials = emulator.enforcer.role_session(role_arn, "lambda.amazonaws.com")
    service = {
        key: value
        for key, value in emulator.client_environment.items()
        if not key.startswith("AWS_ACCESS")
        and not key.startswith("AWS_SECRET")
        and key != "AWS_SESSION_TOKEN"
    }
    # The names as the Console stack gives its Lambda (PLATFORM_NAMES), so the console role
    # needs no cloudformation:DescribeStacks here either.
    names = PlatformNames.from_outputs(STAGE, outputs).to_dict()
    return subprocess_environment(
        {
            **service,
            **credentials.environment(),
            "TUNELOOP_STAGE": STAGE,
            PLATFORM_NAMES_ENV: json.dumps(names),
        }
    )


def exports(platform: LocalPlatform) -> dict[str, str]:
    """What a shell needs so that `tuneloop`, boto3 and the AWS CLI reach this platform."""
    env = platform.emulator.client_environment
    keep = (
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )
    return {**{key: env[key] for key in keep if key in env}, "TUNELOOP_STAGE": STAGE}


def load_examples(platform: LocalPlatform, say: Say) -> None:
    """The example benchmarks, then round 1's drops; round 2's once round 1 has deployed."""
    platform.upload_benchmarks(sorted((EXAMPLES / "benchmarks").glob("*.jsonl")))
    say("   examples: benchmarks uploaded; round 1 drops pushed (a retrain starts)")
    rounds = [EXAMPLES / "drops" / "round1", EXAMPLES / "drops" / "round2"]
    for index, folder in enumerate(rounds, start=1):
        known = {e["executionArn"] for e in platform.executions()}
        # The JSONL drop last: it is the one that crosses the retrain threshold.
        files = sorted(folder.iterdir(), key=lambda p: (p.suffix == ".jsonl", p.name))
        platform.drop_files(files, dataset="support")
        run = platform.follow_run(platform.wait_for_new_run(known, timeout=300))
        say(f"   examples: round {index} run {run.name} ended {run.status}")
        if run.status != "SUCCEEDED":
            return


def run_up(
    work_dir: Path,
    *,
    port: int = 8000,
    examples: bool = False,
    base_model: str | None = None,
    enforce_permissions: bool | None = None,
    until: threading.Event | None = None,
    say: Say = print,
) -> int:
    """Start everything and wait for ``until`` (or Ctrl-C); 0 on a clean stop."""
    shutil.rmtree(work_dir, ignore_errors=True)
    context = {"stage": STAGE, "retrain_threshold": "10"}
    if base_model:
        context["base_model"] = base_model
    platform = LocalPlatform(
        work_dir,
        context=context,
        log=lambda line: None,
        enforce_permissions=enforce_permissions,
    )
    stop = until or threading.Event()
    console: ConsoleProcess | None = None
    say("Starting the local platform. It starts empty: state lives in memory until you stop it.")
    try:
        platform.start()
        say("   synthesizing and deploying the stacks into the emulator …")
        platform.deploy()
        logins = generate_logins()
        users_file = work_dir / USERS_FILE
        write_logins(users_file, logins)
        console = ConsoleProcess(
            work_dir, console_environment(platform), free_port(port), users_file
        )
        console.wait_ready()
        _print_ready(say, platform, console, logins, users_file)
        if examples:
            threading.Thread(
                target=_examples_in_background, args=(platform, say), daemon=True
            ).start()
        if until is None:
            _stop_on_signals(stop)
        while not stop.wait(1.0):
            pass
    except PlatformError as exc:
        say(f"\nFAILED: {exc}")
        return 1
    finally:
        if console is not None:
            console.stop()
        platform.stop()
        say("The local platform stopped; its state is gone.")
    return 0


def _examples_in_background(platform: LocalPlatform, say: Say) -> None:
    try:
        load_examples(platform, say)
    except Exception as exc:  # shown, not fatal: the platform stays up for inspection
        say(f"   examples: stopped: {exc}")


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _print_ready(
    say: Say,
    platform: LocalPlatform,
    console: ConsoleProcess,
    logins: list[Login],
    users_file: Path,
) -> None:
    say("")
    say(f"Console:  {console.url}")
    say(f"Sign in as (local users, one per role; also in {users_file.name} in the work dir):")
    for login in logins:
        say(f"   {login.role:<9} user {login.username:<9} password {login.password}")
    say("")
    say("In another shell, export these so that tuneloop, boto3 and the AWS CLI use it:")
    for key, value in exports(platform).items():
        say(f"   export {key}={value}")
    say("")
    say("Then, for example:")
    say("   tuneloop data push examples/drops/round1 --dataset support   # retrains at 10 records")
    say("   tuneloop status")
    say("   tuneloop models list")
    say("")
    say("Press Ctrl-C to stop (state is not kept).")


def default_up_dir() -> Path:
    return Path(os.environ.get("TUNELOOP_UP_DIR", REPO_ROOT / ".tuneloop" / "up"))
