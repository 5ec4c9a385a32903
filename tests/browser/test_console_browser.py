"""The console in a real browser (Chromium through Playwright) on the local platform.

One platform for the module, with two deployed versions of a tiny model; the console runs as
`tuneloop up` runs it (its own process, under the Console stack's role). The tests go in
order, as an operator's afternoon would: look around, get refused as a viewer, upload a bad
benchmark, roll back, find the rollback in the audit trail, acknowledge and resolve an
incident. Each page's screenshot is written to docs/console/ (docs/console.md links them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.loop_helpers import (
    deployed_platform,
    drop_and_follow,
    given_assembly,
    wait_for,
    write_drop,
)
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop import stack_outputs as out
from tuneloop.incidents import store
from tuneloop.local.platform import REPO_ROOT, LocalPlatform
from tuneloop.local.up import (
    ConsoleProcess,
    Login,
    console_environment,
    free_port,
    generate_logins,
    write_logins,
)

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = REPO_ROOT / "docs" / "console"
PAGES = {
    "dashboard": "/",
    "data": "/data",
    "benchmarks": "/benchmarks",
    "models": "/models",
    "deployments": "/deployments",
    "incidents": "/incidents",
    "runs": "/runs",
    "audit": "/audit",
}

if CHROMIUM is None:  # .ci/run installs it; elsewhere: apt-get install chromium
    pytest.skip(
        "needs Debian's chromium package (apt-get install chromium)", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    base = make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny")
    work = tmp_path_factory.mktemp("console")
    context = {"stage": "local", "retrain_threshold": "5", "base_model": str(base)}
    with deployed_platform(work, context, assembly=given_assembly(), permissive_gate=True) as local:
        for topic, count in (("gadget", 12), ("widget", 8)):
            run = drop_and_follow(local, [write_drop(work / f"{topic}.jsonl", topic, count)])
            assert run.status == "SUCCEEDED", run.cause
        yield local


@pytest.fixture(scope="module")
def logins(platform: LocalPlatform) -> dict[str, Login]:
    return {login.role: login for login in generate_logins()}


@pytest.fixture(scope="module")
def console(platform: LocalPlatform, logins: dict[str, Login]) -> Iterator[str]:
    users = platform.work_dir / "console-users.json"
    write_logins(users, list(logins.values()))
    process = ConsoleProcess(platform.work_dir, console_environment(platform), free_port(0), users)
    try:
        process.wait_ready()
        yield process.url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def as_role(browser: Browser, console: str, logins: dict[str, Login]) -> Iterator[Any]:
    contexts = []

    def sign_in(role: str) -> Page:
        context = browser.new_context(base_url=console, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.fill("input[name=username]", logins[role].username)
        page.fill("input[name=password]", logins[role].password)
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("whoami")).to_contain_text(role)
        return page

    yield sign_in
    for context in contexts:
        context.close()


def production(platform: LocalPlatform) -> dict[str, Any]:
    item = platform.control_item("production")
    assert item is not None
    return item


def test_every_page_renders_for_an_operator(platform: LocalPlatform, as_role: Any) -> None:
    page = as_role("operator")
    serving = production(platform)["model_version"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in PAGES.items():
        response = page.goto(path)
        assert response is not None and response.status == 200, (path, response)
        expect(page.locator("h1").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    page.goto("/")
    expect(page.locator("body")).to_contain_text(serving)


def test_a_viewer_sees_no_deploy_controls_and_a_direct_post_is_refused(
    platform: LocalPlatform, as_role: Any
) -> None:
    before = production(platform)
    page = as_role("viewer")
    page.goto("/deployments")
    expect(page.get_by_test_id("serving-version")).to_have_text(before["model_version"])
    for control in ("rollback-form", "deploy-form", "freeze-form"):
        expect(page.get_by_test_id(control)).to_have_count(0)
    token = page.locator("meta[name=csrf-token]").get_attribute("content")
    assert token, "a signed-in page carries the session's CSRF token"
    refused = page.request.post(
        "/deployments/rollback", form={"csrf_token": token, "confirm": "yes"}
    )
    assert refused.status == 403
    assert production(platform)["model_version"] == before["model_version"]


def test_an_admin_sees_each_problem_of_a_bad_benchmark_upload(as_role: Any, tmp_path: Path) -> None:
    bad = tmp_path / "faq.jsonl"
    bad.write_text(
        '{"id": "a", "prompt": "Is fire hot?", "choices": [" yes", " no"], "answer": 0}\n'
        '{"id": "b", "prompt": "Is ice hot?", "choices": [" yes", " no"], "answer": 7}\n',
        encoding="utf-8",
    )
    page = as_role("admin")  # uploads are admin-only (operators see no upload form)
    page.goto("/benchmarks")
    form = page.get_by_test_id("benchmark-upload")
    form.locator("input[name=name]").fill("company_faq")
    form.locator("input[name=file]").set_input_files(str(bad))
    page.get_by_test_id("benchmark-upload-submit").click()
    errors = page.get_by_test_id("validation-errors")
    expect(errors).to_contain_text("line 2")
    expect(errors).to_contain_text("answer")
    page.screenshot(path=str(SCREENSHOTS / "benchmarks-upload-error.png"), full_page=True)


def test_an_operator_rolls_back_and_the_endpoint_answers_from_the_previous_version(
    platform: LocalPlatform, as_role: Any
) -> None:
    before = production(platform)
    previous = before["last_known_good"]["model_version"]
    page = as_role("operator")
    page.goto("/deployments")
    expect(page.get_by_test_id("serving-version")).to_have_text(before["model_version"])
    expect(page.get_by_test_id("previous-version")).to_contain_text(previous)
    page.get_by_test_id("rollback-submit").click()
    page.get_by_test_id("confirm-submit").click()
    expect(page.get_by_test_id("flash")).to_contain_text(previous)
    assert wait_for(lambda: production(platform)["model_version"] == previous, timeout=120)
    config = production(platform)["endpoint_config_name"]
    platform.wait_for_endpoint(
        lambda e: e["EndpointStatus"] == "InService" and e["EndpointConfigName"] == config,
        timeout=300,
    )
    assert platform.invoke("Hello", max_new_tokens=2)["model_version"] == previous
    page.goto("/deployments")
    expect(page.get_by_test_id("serving-version")).to_have_text(previous)
    page.screenshot(path=str(SCREENSHOTS / "deployments-after-rollback.png"), full_page=True)


def test_the_audit_page_shows_the_rollback_with_the_operators_name(as_role: Any) -> None:
    page = as_role("viewer")
    page.goto("/audit")
    rollback = page.get_by_test_id("audit-row").filter(has_text="rollback")
    expect(rollback.first).to_contain_text("operator")
    page.screenshot(path=str(SCREENSHOTS / "audit.png"), full_page=True)


def open_incident(platform: LocalPlatform, serving: dict[str, Any]) -> tuple[str, str]:
    """An incident as the Incidents function opens it (store.open_incident, its own write);
    returns the table and the incident's id."""
    assert platform.deployment is not None
    outputs = {k: v for s in platform.deployment.stacks.values() for k, v in s.outputs.items()}
    table, incident_id = outputs[out.INCIDENTS_TABLE], "inc-20261204-b10e5e"
    opened = store.open_incident(
        table,
        incident_id,
        opened_at=datetime.now(UTC).isoformat(),
        fields={
            "alarm_name": "tuneloop-local-endpoint-5xx",
            "summary": "The endpoint answers with server errors.",
            "runbook": "docs/runbooks/endpoint-errors.md",
            "reason": "Threshold Crossed: 1 datapoint [4.0] was greater than the threshold (1.0).",
            "metric": {
                "namespace": "AWS/SageMaker",
                "name": "Invocation5XXErrors",
                "statistic": "Sum",
                "period_seconds": 60,
                "comparison": "GreaterThanThreshold",
                "threshold": 1,
            },
            "metric_values": [
                {"at": f"2026-12-04T17:5{m}:00+00:00", "value": v}
                for m, v in enumerate((0, 0, 1, 4))
            ],
            "production": {"model_version": serving["model_version"], "since": ""},
            "last_known_good": dict(serving.get("last_known_good") or {}),
            "automatic_actions": [],
        },
    )
    assert opened
    return table, incident_id


def test_an_operator_acknowledges_and_resolves_an_incident(
    platform: LocalPlatform, as_role: Any
) -> None:
    serving = production(platform)["model_version"]
    table, incident_id = open_incident(platform, production(platform))
    cause = "a bad drop reached training; its records are quarantined now"
    page = as_role("operator")
    page.goto("/incidents")
    page.get_by_role("link", name=incident_id, exact=True).click()
    expect(page.locator("h1")).to_contain_text(incident_id)
    expect(page.get_by_test_id("incident-status")).to_have_text("open")
    expect(page.get_by_test_id("incident-version")).to_have_text(serving)
    expect(page.get_by_test_id("runbook")).to_have_text("docs/runbooks/endpoint-errors.md")

    page.get_by_test_id("acknowledge-form").locator("input[name=note]").fill("looking at it")
    page.get_by_test_id("acknowledge-submit").click()
    expect(page.get_by_test_id("flash")).to_contain_text(f"Incident {incident_id} acknowledged")
    expect(page.get_by_test_id("incident-status")).to_have_text("acknowledged")

    page.get_by_test_id("resolve-form").locator("textarea[name=root_cause]").fill(cause)
    page.get_by_test_id("resolve-submit").click()
    expect(page.get_by_test_id("incident-status")).to_have_text("resolved")
    expect(page.get_by_test_id("root-cause")).to_have_text(cause)
    expect(page.get_by_test_id("resolve-form")).to_have_count(0)
    expect(page.get_by_test_id("incident-timeline")).to_contain_text("looking at it")
    page.screenshot(path=str(SCREENSHOTS / "incident.png"), full_page=True)
    stored = store.get_incident(table, incident_id)
    assert stored.status == "resolved" and stored.root_cause == cause
    assert stored.resolved_by.endswith("(operator)")
    page.goto("/incidents")
    expect(page.get_by_test_id("incident-row").filter(has_text=incident_id)).to_contain_text(
        "resolved"
    )
    page.screenshot(path=str(SCREENSHOTS / "incidents.png"), full_page=True)
    page.goto(f"/audit?target={incident_id}")
    rows = page.get_by_test_id("audit-row")
    expect(rows.filter(has_text="incident_resolved")).to_contain_text("(operator)")
    expect(rows.filter(has_text="incident_acknowledged")).to_contain_text("looking at it")
