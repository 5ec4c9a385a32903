"""The console in a real browser (Chromium through Playwright) on the local platform.

One platform for the module, with two deployed versions of a tiny model; the console runs as
`tuneloop up` runs it (its own process, under the Console stack's role). The tests go in
order, as an operator's afternoon would: look around, get refused as a viewer, upload a bad
benchmark, roll back, find the rollback in the audit trail. Each page's screenshot is written
to docs/console/ (docs/console.md links them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.loop_helpers import (
    PERMISSIVE_POLICY,
    drop_and_follow,
    given_assembly,
    set_gate_policy,
    wait_for,
    write_drop,
)
from tests.unit.tiny_models import make_tiny_causal_lm
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
    local = LocalPlatform(work, context=context, log=lambda _: None).start()
    try:
        local.deploy(given_assembly())
        benchmark = work / "facts.jsonl"
        benchmark.write_text(
            '{"id": "q1", "prompt": "Is water wet?", "choices": [" yes", " no"], "answer": 0}\n',
            encoding="utf-8",
        )
        local.upload_benchmarks([benchmark])
        set_gate_policy(PERMISSIVE_POLICY)
        for topic, count in (("gadget", 12), ("widget", 8)):
            run = drop_and_follow(local, [write_drop(work / f"{topic}.jsonl", topic, count)])
            assert run.status == "SUCCEEDED", run.cause
        yield local
    finally:
        local.stop()


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
