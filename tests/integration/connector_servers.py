"""Real servers for the connector tests: PostgreSQL (initdb + pg_ctl) and a JSON API.

PostgreSQL runs from a temporary data directory on a free loopback port, with password
(SCRAM) authentication, so the tests exercise the same pg8000 login the Lambda does. It
refuses to run as root: as root the server runs as the ``postgres`` (or ``nobody``) user.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

PG_USER = "tuneloop"
PG_PASSWORD = "pg-test-password"
PG_DATABASE = "source"


def postgres_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: PATH, else Debian's versioned directories."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[list[str], pwd.struct_passwd | None]:
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], user
    pytest.skip("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str

    def connect(self) -> Any:
        import pg8000.native

        return pg8000.native.Connection(
            user=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    pytest.importorskip("pg8000", reason="pg8000 (the 'connectors' extra) is not installed")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    prefix, user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="tuneloop-pg-"))
    data, log = root / "data", root / "server.log"
    password_file = root / "password"
    password_file.write_text(PG_PASSWORD + "\n")
    if user is not None:
        for path in (root, password_file):
            os.chown(path, user.pw_uid, user.pw_gid)
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER,
         f"--pwfile={password_file}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True, env=env, cwd=root,
    )  # fmt: skip
    options = f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off"
    started = subprocess.run(
        [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
         "-w", "-t", "60", "start"],
        capture_output=True, env=env, cwd=root, text=True,
    )  # fmt: skip
    if started.returncode != 0:
        details = log.read_text() if log.exists() else started.stderr
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{details}")
    try:
        admin = PostgresServer("127.0.0.1", port, PG_USER, PG_PASSWORD, "postgres")
        connection = admin.connect()
        connection.run(f"CREATE DATABASE {PG_DATABASE}")
        connection.close()
        yield PostgresServer("127.0.0.1", port, PG_USER, PG_PASSWORD, PG_DATABASE)
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, env=env, cwd=root,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# A paginated JSON API
# ---------------------------------------------------------------------------------------


@dataclass
class ApiState:
    """What the test API serves, and what it saw."""

    records: list[dict[str, Any]] = field(default_factory=list)
    token: str = "s3cr3t-token"
    page_size: int = 2
    # Status codes to answer with before serving normally, one per request (e.g. [429, 500]).
    failures: list[int] = field(default_factory=list)
    retry_after: str = "0"
    requests: list[dict[str, Any]] = field(default_factory=list)

    def newer(self, since: str | None) -> list[dict[str, Any]]:
        # Inclusive, as many APIs are: the connector must drop what it already has.
        rows = [r for r in self.records if since is None or r["updated_at"] >= since]
        return sorted(rows, key=lambda r: (r["updated_at"], r["id"]))


def _page(state: ApiState, query: dict[str, str], path: str, base: str) -> dict[str, Any]:
    rows = state.newer(query.get("since"))
    size = int(query.get("limit", state.page_size))
    if path == "/cursor":
        start = int(query.get("cursor", "0"))
        chunk = rows[start : start + size]
        more = start + size < len(rows)
        return {"result": {"items": chunk}, "next_cursor": str(start + size) if more else None}
    if path == "/pages":
        number = int(query.get("page", "1"))
        return {"data": rows[(number - 1) * size : number * size]}
    # /links: next link relative to the server
    start = int(query.get("offset", "0"))
    chunk = rows[start : start + size]
    next_link = None
    if start + size < len(rows):
        extra = f"&since={query['since']}" if "since" in query else ""
        next_link = f"/links?offset={start + size}&limit={size}{extra}"
    return {"items": chunk, "links": {"next": next_link}}


def make_handler(state: ApiState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            state.requests.append(
                {"path": parts.path, "query": query, "auth": self.headers.get("Authorization")}
            )
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                self._send(401, {"error": "bad token"})
                return
            if state.failures:
                status = state.failures.pop(0)
                headers = {"Retry-After": state.retry_after} if status == 429 else {}
                self._send(status, {"error": "try again"}, headers)
                return
            if parts.path not in ("/cursor", "/pages", "/links"):
                self._send(404, {"error": "no such path"})
                return
            self._send(200, _page(state, query, parts.path, ""))

    return Handler


@dataclass
class ApiServer:
    url: str
    state: ApiState


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    state = ApiState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ApiServer(f"http://127.0.0.1:{server.server_address[1]}", state)
    finally:
        server.shutdown()
        server.server_close()


Sleeper = Callable[[float], None]
