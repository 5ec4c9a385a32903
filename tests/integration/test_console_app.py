"""The console over moto: sign-in, role checks, CSRF, every page, a benchmark upload."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    Platform,
    aws_credentials,
    platform,
)
from tuneloop.console.app import create_app
from tuneloop.console.auth_local import LocalUsers
from tuneloop.operations.names import PlatformNames

PAGES = ("/", "/data", "/benchmarks", "/models", "/deployments", "/incidents", "/runs", "/audit")
PASSWORDS = {role: f"{role}-pw" for role in ("viewer", "operator", "admin")}


def names_of(platform: Platform) -> PlatformNames:  # noqa: F811
    return PlatformNames(
        stage="test",
        raw_bucket=platform.raw_bucket,
        curated_bucket=platform.curated_bucket,
        artifacts_bucket=platform.artifacts_bucket,
        records_table=platform.records_table,
        drops_table=platform.drops_table,
        model_versions_table=platform.model_versions_table,
        control_table=platform.control_table,
        benchmarks_table=platform.benchmarks_table,
        audit_table=platform.audit_table,
        incidents_table=platform.incidents_table,
        endpoint_name=platform.endpoint_name,
    )


@pytest.fixture
def app_client(platform: Platform) -> Iterator[TestClient]:  # noqa: F811
    users = LocalUsers.from_passwords({role: (role, pw) for role, pw in PASSWORDS.items()})
    app = create_app(names_of(platform), users, secret_key="test-secret", secure_cookies=False)
    with TestClient(app) as client:
        yield client


def token(client: TestClient, path: str = "/login") -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text)
    assert found, "every page carries the CSRF token"
    return found.group(1)


def sign_in(client: TestClient, role: str) -> None:
    response = client.post(
        "/login",
        data={"username": role, "password": PASSWORDS[role], "csrf_token": token(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_signed_out_pages_redirect_to_login_and_healthz_is_open(app_client: TestClient) -> None:
    assert app_client.get("/healthz").text == "ok"
    for path in PAGES:
        response = app_client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"


def test_a_wrong_password_is_refused(app_client: TestClient) -> None:
    response = app_client.post(
        "/login", data={"username": "admin", "password": "nope", "csrf_token": token(app_client)}
    )
    assert response.status_code == 401
    assert app_client.get("/", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_httponly_and_samesite_lax(app_client: TestClient) -> None:
    app_client.get("/login")
    response = app_client.post(
        "/login",
        data={
            "username": "viewer",
            "password": PASSWORDS["viewer"],
            "csrf_token": token(app_client),
        },
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_every_page_renders_for_a_viewer_with_one_h1(app_client: TestClient) -> None:
    sign_in(app_client, "viewer")
    for path in PAGES:
        response = app_client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.text.count("<h1") == 1, path
        assert 'data-testid="whoami"' in response.text


def test_a_viewer_sees_no_controls_and_a_direct_post_is_forbidden(app_client: TestClient) -> None:
    sign_in(app_client, "viewer")
    page = app_client.get("/deployments").text
    assert 'data-testid="rollback-form"' not in page and 'data-testid="freeze-form"' not in page
    csrf = token(app_client, "/deployments")
    for path in ("/deployments/rollback", "/deployments/freeze", "/runs/start"):
        assert app_client.post(path, data={"csrf_token": csrf, "confirm": "yes"}).status_code == 403


def test_a_post_without_the_csrf_token_is_forbidden(app_client: TestClient) -> None:
    sign_in(app_client, "operator")
    response = app_client.post("/deployments/freeze", data={"confirm": "yes", "reason": "x"})
    assert response.status_code == 403


def test_an_operator_confirms_a_freeze_and_it_is_audited(app_client: TestClient) -> None:
    sign_in(app_client, "operator")
    csrf = token(app_client, "/deployments")
    asked = app_client.post("/deployments/freeze", data={"csrf_token": csrf, "reason": "audit"})
    assert 'data-testid="confirm-submit"' in asked.text
    done = app_client.post(
        "/deployments/freeze", data={"csrf_token": csrf, "reason": "audit", "confirm": "yes"}
    )
    assert "Deployment frozen" in done.text and "frozen</strong>" in done.text
    audit = app_client.get("/audit?action=freeze").text
    assert "operator (operator)" in audit


def test_benchmark_upload_is_for_admins_and_shows_each_problem(app_client: TestClient) -> None:
    bad = (
        b'{"id": "a", "prompt": "Is fire hot?", "choices": [" yes", " no"], "answer": 0}\n'
        b'{"id": "b", "prompt": "Is ice hot?", "choices": [" yes", " no"], "answer": 7}\n'
    )
    sign_in(app_client, "operator")
    csrf = token(app_client, "/benchmarks")
    files = {"file": ("faq.jsonl", bad, "application/json")}
    form = {"csrf_token": csrf, "name": "company_faq"}
    assert app_client.post("/benchmarks/upload", data=form, files=files).status_code == 403
    sign_in(app_client, "admin")
    form["csrf_token"] = token(app_client, "/benchmarks")
    response = app_client.post("/benchmarks/upload", data=form, files=files)
    assert response.status_code == 422
    errors = response.text.split('data-testid="validation-errors"', 1)[1].split("</div>", 1)[0]
    assert "line 2" in errors and "answer" in errors


def test_an_operator_runs_a_suite_on_a_version_and_a_viewer_cannot(
    platform: Platform,  # noqa: F811
) -> None:
    from tests.integration.aws_fixtures import ACCOUNT, put_version
    from tuneloop import aws
    from tuneloop.benchmarks.store import BenchmarkStore

    machine = aws.client("stepfunctions").create_state_machine(
        name="benchmark-run",
        definition='{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}',
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/tuneloop-states",
    )["stateMachineArn"]
    names = replace(names_of(platform), benchmark_run_state_machine_arn=machine)
    lines = b'{"id": "a", "prompt": "Is fire hot?", "choices": [" yes", " no"], "answer": 0}\n'
    BenchmarkStore(table=names.benchmarks_table, bucket=names.artifacts_bucket).create_from_bytes(
        "company_faq", lines, source="faq.jsonl"
    )
    archive = f"s3://{names.artifacts_bucket}/jobs/v0001-train/output/model.tar.gz"
    put_version(names.model_versions_table, "v0001", status="registered", model_data_url=archive)
    put_version(names.model_versions_table, "v0002", status="training", days_ago=1)
    users = LocalUsers.from_passwords({role: (role, pw) for role, pw in PASSWORDS.items()})
    app = create_app(names, users, secret_key="test-secret", secure_cookies=False)
    with TestClient(app) as client:
        sign_in(client, "viewer")
        page = client.get("/benchmarks").text
        assert 'data-testid="benchmark-run"' not in page
        form = {"csrf_token": token(client, "/benchmarks"), "suite": "company_faq",
                "model_version": "v0001"}  # fmt: skip
        assert client.post("/benchmarks/run", data=form).status_code == 403

        sign_in(client, "operator")
        page = client.get("/benchmarks").text
        run_form = page.split('data-testid="benchmark-run"', 1)[1].split("</form>", 1)[0]
        assert "<option>v0001</option>" in run_form and "v0002" not in run_form  # trained only
        form["csrf_token"] = token(client, "/benchmarks")
        done = client.post("/benchmarks/run", data=form)
        assert "Benchmark run v0001-company_faq-" in done.text and "started" in done.text
        assert "Recent benchmark runs" in done.text
        refused = client.post("/benchmarks/run", data={**form, "model_version": "v0002"})
        assert "No run started" in refused.text and "no model archive yet" in refused.text
        assert "benchmark_run_started" in client.get("/audit").text


def test_list_pages_show_the_newest_and_link_to_more(
    app_client: TestClient,
    platform: Platform,  # noqa: F811
) -> None:
    from tests.integration.aws_fixtures import put_version

    for age in range(3):
        put_version(platform.model_versions_table, f"v000{age}", days_ago=age, status="rejected")
    sign_in(app_client, "viewer")
    page = app_client.get("/models?limit=2").text
    assert "v0000" in page and "v0001" in page and "v0002" not in page  # newest first
    assert 'href="/models?limit=8"' in page
    everything = app_client.get("/models?limit=5").text
    assert "v0002" in everything and "The newest" not in everything
