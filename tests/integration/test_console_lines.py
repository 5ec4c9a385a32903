"""The console on a stage with model lines (moto): production per line on the overview and
the deployments page, each version's line, deploy and rollback of one line by an operator
(the line reaches the release input and the Rollback function's event), none for a viewer."""

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
    put_version,
)
from tests.integration.line_fakes import (
    InferenceComponents,
    RollbackFunction,
    create_release_machine,
    put_line_production,
    release_input,
)
from tests.integration.test_console_app import PASSWORDS, names_of, sign_in, token
from tests.integration.test_operations_lines import LINES
from tuneloop import aws
from tuneloop.console.app import create_app
from tuneloop.console.auth_local import LocalUsers
from tuneloop.operations.names import PlatformNames

PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneloop-models/"


@pytest.fixture
def names(platform: Platform) -> PlatformNames:  # noqa: F811
    """support serves v0002-support (last-known-good v0001-support) on an InService
    component; search has a registered candidate and no component yet."""
    resolved = replace(
        names_of(platform),
        model_lines=LINES.to_json(),
        release_state_machine_arn=create_release_machine(),
        rollback_function="tuneloop-rollback",
    )
    for age, (version, status, line) in enumerate(
        (
            ("v0003-search", "registered", "search"),
            ("v0002-support", "production", "support"),
            ("v0001-support", "deployed", "support"),
        )
    ):
        put_version(
            platform.model_versions_table,
            version,
            days_ago=age,
            status=status,
            model_line=line,
            model_package_arn=f"{PACKAGE}{age + 1}",
        )
    put_line_production(platform.control_table, "support", "v0002-support", "v0001-support")
    InferenceComponents().add("support", artifact_url="s3://models/v0002-support")
    return resolved


@pytest.fixture
def client(names: PlatformNames) -> Iterator[TestClient]:
    users = LocalUsers.from_passwords({role: (role, pw) for role, pw in PASSWORDS.items()})
    app = create_app(names, users, secret_key="test-secret", secure_cookies=False)
    with TestClient(app) as test_client:
        yield test_client


def _row(page: str, line: str) -> str:
    found = re.search(rf'<tr data-testid="line-{line}">(.*?)</tr>', page, re.S)
    assert found, f"no row for line {line}"
    return found.group(1)


def test_the_overview_shows_production_per_line(client: TestClient) -> None:
    sign_in(client, "viewer")
    page = client.get("/").text
    support, search = _row(page, "support"), _row(page, "search")
    assert "v0002-support" in support and "v0001-support" in support
    assert "InService" in support
    assert "nothing yet" in search and "not created" in search
    assert page.index('data-testid="line-support"') < page.index('data-testid="line-search"')


def test_a_viewer_sees_the_lines_but_no_actions(client: TestClient) -> None:
    sign_in(client, "viewer")
    page = client.get("/deployments").text
    assert "v0002-support" in _row(page, "support")
    assert 'data-testid="line-select"' not in page and 'data-testid="deploy-form"' not in page
    csrf = token(client, "/deployments")
    for path in ("/deployments/deploy", "/deployments/rollback"):
        form = {"csrf_token": csrf, "confirm": "yes", "model_line": "support"}
        assert client.post(path, data=form).status_code == 403


def test_an_operator_picks_the_line_of_each_action(client: TestClient) -> None:
    sign_in(client, "operator")
    page = client.get("/deployments").text
    selects = re.findall(r'<select name="model_line"[^>]*>(.*?)</select>', page, re.S)
    assert len(selects) == 2  # rollback and deploy
    for select in selects:
        assert re.findall(r'value="([^"]+)"', select) == ["support", "search"]
    assert "v0003-search (registered, line search)" in page


def test_an_operator_deploys_a_version_on_its_line(client: TestClient) -> None:
    sign_in(client, "operator")
    csrf = token(client, "/deployments")
    form = {"csrf_token": csrf, "version": "v0003-search", "model_line": "search"}
    # The confirmation step names the line and carries it to the real post
    confirm = client.post("/deployments/deploy", data=form).text
    assert "deploy v0003-search on model line search" in confirm
    assert '<input type="hidden" name="model_line" value="search">' in confirm
    done = client.post("/deployments/deploy", data={**form, "confirm": "yes"})
    assert "Deploying v0003-search on model line search" in done.text
    (execution,) = aws.stepfunctions().list_executions(stateMachineArn=_release_arn(client))[
        "executions"
    ]
    release = release_input(execution["executionArn"])
    assert release["model_line"] == "search" and release["actor"]["source"] == "console"
    assert release["actor"]["name"].startswith("operator")


def test_an_operator_rolls_back_one_line(client: TestClient) -> None:
    function = RollbackFunction(
        {"action": "rolled_back", "from_version": "v0002-support", "to_version": "v0001-support"}
    )
    sign_in(client, "operator")
    csrf = token(client, "/deployments")
    form = {"csrf_token": csrf, "to_version": "", "model_line": "support", "confirm": "yes"}
    page = client.post("/deployments/rollback", data=form).text
    assert "Rolled back on model line support from v0002-support to v0001-support" in page
    (event,) = function.events
    assert event["model_line"] == "support" and event["actor"]["source"] == "console"


def test_an_action_without_a_line_says_which_lines_there_are(client: TestClient) -> None:
    sign_in(client, "operator")
    csrf = token(client, "/deployments")
    form = {"csrf_token": csrf, "version": "v0003-search", "confirm": "yes"}
    page = client.post("/deployments/deploy", data=form).text
    assert "serves the model lines support, search" in page
    assert (
        aws.stepfunctions().list_executions(stateMachineArn=_release_arn(client))["executions"]
        == []
    )


def test_version_pages_show_the_line(client: TestClient) -> None:
    sign_in(client, "viewer")
    listing = client.get("/models").text
    assert "<th>Line</th>" in listing
    assert re.findall(r'data-testid="model-line">([^<]*)<', listing) == [
        "search",
        "support",
        "support",
    ]
    detail = client.get("/models/v0002-support").text
    assert '<strong data-testid="model-line">support</strong>' in detail
    assert "in production on its line" in detail


def _release_arn(client: TestClient) -> str:
    names: PlatformNames = client.app.state.names  # type: ignore[attr-defined]
    return names.release_state_machine_arn


def test_an_admin_sets_one_lines_gate_policy(client: TestClient, names: PlatformNames) -> None:
    sign_in(client, "admin")
    page = client.get("/benchmarks?line=search").text
    assert "Gate policy of line search" in page
    assert '<input type="hidden" name="model_line" value="search">' in page
    policy = '{"suites": {"wiki_qa": {"role": "must_pass", "metric": "acc", "floor": 0.6}}}'
    csrf = token(client, "/benchmarks?line=search")
    form = {"csrf_token": csrf, "policy": policy, "model_line": "search"}
    done = client.post("/deployments/gate-policy", data=form).text
    assert "Gate policy of line search changed." in done
    # Stored for search only: the Gate reads gate_policy#search; support keeps the stage's
    items = aws.table(names.control_table)
    stored = items.get_item(Key={"key": "gate_policy#search"})["Item"]
    assert '"wiki_qa"' in str(stored["policy"]) and str(stored["by"]).startswith("admin")
    assert "Item" not in items.get_item(Key={"key": "gate_policy#support"})
    assert "Item" not in items.get_item(Key={"key": "gate_policy"})
    assert "wiki_qa" in client.get("/benchmarks?line=search").text
    assert "wiki_qa" not in client.get("/benchmarks?line=support").text


def test_a_gate_policy_without_a_line_is_refused_on_a_stage_with_lines(
    client: TestClient, names: PlatformNames
) -> None:
    sign_in(client, "admin")
    csrf = token(client, "/benchmarks")
    policy = '{"suites": {"mmlu": {"role": "general", "metric": "acc", "delta": 0.1}}}'
    page = client.post("/deployments/gate-policy", data={"csrf_token": csrf, "policy": policy}).text
    assert "Gate policy not changed" in page and "support, search" in page
    assert "Item" not in aws.table(names.control_table).get_item(Key={"key": "gate_policy"})
