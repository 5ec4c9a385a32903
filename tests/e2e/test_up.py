"""`tuneloop up` as a newcomer meets it: it prints a console URL, logins and exports; the
console answers and signs a viewer in; the CLI reaches the same platform through the exports;
an interrupt stops everything."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.loop_helpers import wait_for
from tuneloop.local.up import run_up

pytestmark = pytest.mark.e2e


class Started:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stop = threading.Event()
        self.code: int | None = None

    def value(self, pattern: str) -> str:
        for line in self.lines:
            found = re.search(pattern, line)
            if found:
                return found[1]
        raise AssertionError(f"`tuneloop up` printed no line matching {pattern!r}: {self.lines}")


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    up = Started()
    work = tmp_path_factory.mktemp("up")

    def run() -> None:
        up.code = run_up(work, port=0, until=up.stop, say=up.lines.append)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready = wait_for(lambda: any(line.startswith("Press Ctrl-C") for line in up.lines), 300)
    assert ready, up.lines
    try:
        yield up
    finally:
        up.stop.set()
        thread.join(timeout=120)


def test_it_says_the_platform_starts_empty(started: Started) -> None:
    assert "starts empty" in started.lines[0]


def test_a_viewer_signs_in_with_the_printed_login(started: Started) -> None:
    url = started.value(r"^Console:\s+(\S+)")
    password = started.value(r"^\s+viewer\s+user viewer\s+password (\S+)")
    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/").url.path == "/login"  # signed out: sent to sign in
        form = client.get("/login").text
        token = re.search(r'name="csrf-token" content="([^"]+)"', form)
        assert token, "the login page carries a CSRF token"
        signed_in = client.post(
            "/login", data={"username": "viewer", "password": password, "csrf_token": token[1]}
        )
        assert signed_in.status_code == 200 and signed_in.url.path == "/"
        assert "viewer" in signed_in.text
        refused = client.post("/deployments/freeze", data={"csrf_token": token[1]})
        assert refused.status_code == 403


def test_the_cli_reaches_the_platform_through_the_printed_exports(started: Started) -> None:
    exports = dict(re.findall(r"^\s+export (\w+)=(\S+)$", "\n".join(started.lines), re.M))
    assert {"AWS_ENDPOINT_URL", "TUNELOOP_STAGE"} <= set(exports)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | exports
    status = subprocess.run(
        [sys.executable, "-m", "tuneloop.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown, "status names the platform's state"


def test_an_interrupt_stops_everything(started: Started) -> None:
    started.stop.set()
    assert wait_for(lambda: started.code is not None, 120)
    assert started.code == 0
    assert started.lines[-1].startswith("The local platform stopped")
