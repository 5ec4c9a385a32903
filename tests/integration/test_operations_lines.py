"""The operations CLI on a stage with model lines (moto): `tuneloop status` per line, deploy
and rollback with --line (the line in the manual events), each version's line."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

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
from tests.integration.test_operations_cli import names_of
from tuneloop import aws
from tuneloop.cli import main
from tuneloop.model_line_settings import ModelLines
from tuneloop.operations import audit
from tuneloop.operations.audit import Actor
from tuneloop.operations.names import PlatformNames
from tuneloop.stack_outputs import MODEL_LINES

LINES = ModelLines.parse(
    [
        {"name": "support", "datasets": ["acme_support"]},
        {"name": "search", "datasets": ["wiki", "intranet"]},
    ]
)
CLI_ACTOR = Actor(name="arn:aws:iam::123456789012:user/ci", kind="iam", source="cli")


@pytest.fixture
def components(platform: Platform) -> InferenceComponents:  # noqa: F811
    return InferenceComponents()


@pytest.fixture
def names(
    platform: Platform,  # noqa: F811
    components: InferenceComponents,
    monkeypatch: pytest.MonkeyPatch,
) -> PlatformNames:
    """Two lines: support serves v0002-support (last-known-good v0001-support) on an
    InService component; search has a registered candidate, nothing in production and no
    component yet."""
    resolved = replace(
        names_of(platform),
        model_lines=LINES.to_json(),
        release_state_machine_arn=create_release_machine(),
        rollback_function="tuneloop-rollback",
    )
    monkeypatch.setattr(PlatformNames, "for_stage", staticmethod(lambda stage: resolved))
    monkeypatch.setattr(Actor, "from_iam", staticmethod(lambda source: CLI_ACTOR))
    table = platform.model_versions_table
    package = "arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneloop-models/"
    for age, (version, status, line) in enumerate(
        (
            ("v0003-search", "registered", "search"),
            ("v0002-support", "production", "support"),
            ("v0001-support", "deployed", "support"),
        )
    ):
        put_version(
            table,
            version,
            days_ago=age,
            status=status,
            model_line=line,
            model_package_arn=f"{package}{age + 1}",
        )
    put_line_production(platform.control_table, "support", "v0002-support", "v0001-support")
    components.add("support", artifact_url="s3://models/v0002-support")
    return resolved


def test_status_shows_each_line_with_its_component(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    # When an operator asks for the status as JSON
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    # Then each line has its production, last-known-good and component, in the stage's order
    support, search = status["model_lines"]
    assert support["model_line"] == "support" and support["version"] == "v0002-support"
    assert support["last_known_good"] == "v0001-support"
    assert support["component_status"] == "InService"
    assert search["version"] == "" and search["component_status"] is None
    # And the text output has one row per line
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("support"))
    assert "v0002-support" in row and "v0001-support" in row and "InService" in row
    assert "MODEL_LINE" in out and "COMPONENT_STATUS" in out
    # And the endpoint's own production does not claim that nothing is deployed
    assert "nothing has been deployed" not in out
    assert "each model line serves its own version (support, search)" in out


def test_status_shows_a_lines_last_rollback(
    names: PlatformNames,
    platform: Platform,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    aws.table(platform.control_table).update_item(
        Key={"key": "production#support"},
        UpdateExpression="SET last_rollback = :r",
        ExpressionAttributeValues={
            ":r": {"from_version": "v0009-support", "at": "2026-12-01T10:00:00+00:00"}
        },
    )
    assert main(["status", "--json"]) == 0
    support = json.loads(capsys.readouterr().out)["model_lines"][0]
    assert support["last_rollback"]["from_version"] == "v0009-support"


def test_deploy_on_a_line_puts_the_line_in_the_release_input(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "v0003-search", "--line", "search", "--json"]) == 0
    started = json.loads(capsys.readouterr().out)
    assert started["model_line"] == "search"
    release = release_input(started["execution_arn"])
    assert release["model_line"] == "search"
    assert release["model_version"] == "v0003-search" and release["manual"] is True
    assert release["actor"]["name"] == CLI_ACTOR.name


@pytest.mark.parametrize("command", [["deploy", "v0003-search"], ["rollback"]])
def test_without_line_an_action_is_refused_naming_the_lines(
    names: PlatformNames, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "support, search" in err and "--line" in err


@pytest.mark.parametrize(
    "command", [["deploy", "v0003-search", "--line", "faq"], ["rollback", "--line", "faq"]]
)
def test_an_unknown_line_is_refused_listing_the_lines(
    names: PlatformNames, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "'faq'" in err and "support, search" in err


def test_a_version_of_another_line_is_not_deployed(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "v0003-search", "--line", "support"]) == 3
    assert "trained for model line search" in capsys.readouterr().err


def test_rollback_of_a_line_sends_the_line_to_the_rollback_function(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    function = RollbackFunction(
        {
            "action": "rolled_back",
            "model_line": "support",
            "from_version": "v0002-support",
            "to_version": "v0001-support",
        }
    )
    assert main(["rollback", "--line", "support", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model_line"] == "support" and result["to_version"] == "v0001-support"
    (event,) = function.events
    assert event["manual"] is True and event["model_line"] == "support"
    assert event["actor"]["name"] == CLI_ACTOR.name and event["request_id"]


def test_rollback_of_a_line_to_a_chosen_version_runs_a_release_on_that_line(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollback", "--line", "support", "--to", "v0001-support", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["how"] == "release" and result["from_version"] == "v0002-support"
    release = release_input(result["execution_arn"])
    assert release["model_line"] == "support" and release["rollback"] is True


def test_rollback_of_a_line_with_nothing_in_production_is_a_conflict(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollback", "--line", "search"]) == 3
    assert "nothing is in production on model line search" in capsys.readouterr().err


def test_the_versions_listing_shows_each_versions_line(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "list", "--json"]) == 0
    rows = {row["version"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["v0003-search"]["model_line"] == "search"
    # in production on its line (production#support), not on the endpoint's own item
    assert rows["v0002-support"]["in_production"] is True
    assert rows["v0001-support"]["in_production"] is False
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "MODEL_LINE" in out.splitlines()[0]
    assert main(["models", "show", "v0003-search", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_line"] == "search"


def test_the_audit_listing_shows_the_line_of_a_change(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the record ConfirmDeployment writes for a person's deploy on a line
    audit.append(
        names.audit_table,
        Actor(name="ops (operator)", kind="user", source="console"),
        "deploy",
        "v0003-search",
        before={"model_version": "", "model_line": "search"},
        after={"model_version": "v0003-search", "model_line": "search"},
    )
    assert main(["audit", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["model_line"] == "search"
    assert main(["audit"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "MODEL_LINE" in out[0] and out[1].rstrip().endswith("search")


def test_a_line_on_a_stage_without_lines_is_refused(
    platform: Platform,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(PlatformNames, "for_stage", staticmethod(lambda s: names_of(platform)))
    monkeypatch.setattr(Actor, "from_iam", staticmethod(lambda source: CLI_ACTOR))
    assert main(["rollback", "--line", "support"]) == 2
    assert "has no model lines" in capsys.readouterr().err
    assert main(["status", "--json"]) == 0
    assert "model_lines" not in json.loads(capsys.readouterr().out)


def test_names_read_the_lines_from_the_serving_output(platform: Platform) -> None:  # noqa: F811
    outputs = {output: value for output, value in names_of(platform).to_dict().items() if value}
    from tuneloop.operations.names import OUTPUT_IDS

    by_id = {OUTPUT_IDS[field]: value for field, value in outputs.items() if field in OUTPUT_IDS}
    with_lines = PlatformNames.from_outputs("test", {**by_id, MODEL_LINES: LINES.to_json()})
    assert with_lines.lines().names == ("support", "search")
    # a stage deployed before the output existed has no lines
    assert PlatformNames.from_outputs("test", by_id).lines().names == ()
