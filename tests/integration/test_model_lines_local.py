"""Model lines on one endpoint, on the emulator: each line's versions are deployed to its own
adapter component and promoted in its own Control item; a rollback of one line restores its
last-known-good adapter while the other line serves on; a version whose adapter the base
refuses is not promoted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.archives import archive_folder
from tests.integration.aws_fixtures import Platform, create_platform, register_approved_package
from tests.integration.emulator_fixtures import unenforced_emulator
from tests.integration.test_inference_components_local import (
    host_base_component,
    invoke_component,
    wait_for_component,
)
from tests.unit.tiny_models import make_tiny_adapter, make_tiny_causal_lm
from tuneloop import aws
from tuneloop.release.control import read_production
from tuneloop.release.deployment import DeploymentRolledBack
from tuneloop.release.model_lines import (
    LineServing,
    ModelLineError,
    confirm_line,
    deploy_line,
    describe_component,
    roll_back_line,
)
from tuneloop.release.model_versions import get_version

ENDPOINT = "lines"
SUPPORT = LineServing(ENDPOINT, "base", "support")
SEARCH = LineServing(ENDPOINT, "base", "search")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    for _ in unenforced_emulator(tmp_path_factory):
        aws.reset()
        yield create_platform()
    aws.reset()


@pytest.fixture(scope="module")
def packages(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """version → approved model package over the adapter trained for it."""
    root = tmp_path_factory.mktemp("models")
    base = make_tiny_causal_lm(root / "base")
    host_base_component(ENDPOINT, base)
    found: dict[str, str] = {}
    for seed, version in enumerate(("support-v1", "support-v2", "search-v1"), start=1):
        folder = make_tiny_adapter(base, root / version, seed=seed, version=version)
        found[version] = _register(platform, version, archive_folder(folder))
    found["support-bad"] = _register(platform, "support-bad", archive_folder(base))
    return found


def _register(platform: Platform, version: str, artifact: bytes) -> str:
    return register_approved_package(
        platform, version, artifact, key=f"models/{version}/model.tar.gz"
    )


def _release(platform: Platform, line: LineServing, version: str, package: str) -> dict[str, str]:
    """Deploy and, once the component settles, confirm (as the state machine polls)."""
    deployment = deploy_line(
        version, package, line=line, model_versions_table=platform.model_versions_table
    )
    wait_for_component(line.component, "InService")
    return confirm_line(
        version,
        deployment,
        line=line,
        control_table=platform.control_table,
        model_versions_table=platform.model_versions_table,
    )


def _production(platform: Platform, line: LineServing) -> tuple[str, str]:
    production = read_production(platform.control_table, line.control_key)
    assert production is not None
    lkg = production.last_known_good
    return production.current.model_version, lkg.model_version if lkg else ""


def _status(platform: Platform, version: str) -> str:
    return str((get_version(platform.model_versions_table, version) or {}).get("status"))


def test_each_line_is_deployed_promoted_and_rolled_back_on_its_own(
    platform: Platform, packages: dict[str, str]
) -> None:
    # Given both lines deployed, then the support line's second version
    assert _release(platform, SUPPORT, "support-v1", packages["support-v1"]) == {
        "production_version": "support-v1",
        "last_known_good_version": "",
    }
    _release(platform, SEARCH, "search-v1", packages["search-v1"])
    assert _release(platform, SUPPORT, "support-v2", packages["support-v2"]) == {
        "production_version": "support-v2",
        "last_known_good_version": "support-v1",
    }
    assert invoke_component("support", endpoint_name=ENDPOINT)["model_version"] == "support-v2"
    assert invoke_component("search", endpoint_name=ENDPOINT)["model_version"] == "search-v1"
    assert _production(platform, SUPPORT) == ("support-v2", "support-v1")
    assert _production(platform, SEARCH) == ("search-v1", "")
    # The endpoint's own production item is not a line's
    assert read_production(platform.control_table) is None
    assert _status(platform, "support-v1") == "deployed"

    # When the support line is rolled back
    result = roll_back_line(
        SUPPORT,
        control_table=platform.control_table,
        model_versions_table=platform.model_versions_table,
        reason="support-5xx",
    )
    assert result == {
        "status": "rolled_back",
        "model_line": "support",
        "from_version": "support-v2",
        "to_version": "support-v1",
    }
    wait_for_component("support", "InService")

    # Then its component answers with the last-known-good adapter, the search line is untouched
    assert invoke_component("support", endpoint_name=ENDPOINT)["model_version"] == "support-v1"
    assert invoke_component("search", endpoint_name=ENDPOINT)["model_version"] == "search-v1"
    assert _production(platform, SUPPORT) == ("support-v1", "")
    assert (_status(platform, "support-v2"), _status(platform, "support-v1")) == (
        "rolled_back",
        "production",
    )
    # And with no last-known-good left, a second rollback does nothing
    again = roll_back_line(
        SUPPORT,
        control_table=platform.control_table,
        model_versions_table=platform.model_versions_table,
        reason="support-5xx",
    )
    assert again["status"] == "skipped"


def test_a_version_the_base_refuses_is_not_promoted(
    platform: Platform, packages: dict[str, str]
) -> None:
    _release(platform, SEARCH, "search-v1", packages["search-v1"])
    before = _production(platform, SEARCH)
    deployment = deploy_line(
        "support-bad",
        packages["support-bad"],
        line=SEARCH,
        model_versions_table=platform.model_versions_table,
    )
    wait_for_component("search", "InService")
    with pytest.raises(DeploymentRolledBack, match="not a TuneLoop adapter folder"):
        confirm_line(
            "support-bad",
            deployment,
            line=SEARCH,
            control_table=platform.control_table,
            model_versions_table=platform.model_versions_table,
        )
    assert _production(platform, SEARCH) == before
    assert invoke_component("search", endpoint_name=ENDPOINT)["model_version"] == "search-v1"


@pytest.mark.parametrize("name", ["", "-x", "a" * 64, "has space", "base"])
def test_a_line_needs_a_component_name_of_its_own(name: str) -> None:
    with pytest.raises(ModelLineError):
        LineServing(ENDPOINT, "base", name)


def test_a_component_that_was_never_created_is_not_described(platform: Platform) -> None:
    assert describe_component("never-created") is None
