"""The ModelVersions repository: named transitions are the only way a status changes."""

from __future__ import annotations

import pytest

from tests.integration.aws_fixtures import Platform, aws_credentials, platform
from tuneloop.release import model_versions as versions

__all__ = ["aws_credentials", "platform"]


def status(platform: Platform, model_version: str) -> str:
    item = versions.get_version(platform.model_versions_table, model_version)
    assert item is not None
    return str(item["status"])


def test_a_version_walks_the_release_path_in_order(platform: Platform) -> None:
    table = platform.model_versions_table
    versions.start_training(table, "v1", {"record_count": 3})
    versions.record_gate_decision(table, "v1", decision_uri="s3://a/d.json", approved=True, at="t")
    assert status(platform, "v1") == versions.TRAINING
    versions.register(table, "v1", {"model_package_arn": "arn:p/1"})
    versions.start_deploying(table, "v1", {"endpoint_config_name": "c1"})
    versions.promote(table, "v1", {"promoted_at": "t"})
    assert status(platform, "v1") == versions.PRODUCTION
    item = versions.get_version(table, "v1")
    assert item is not None
    assert item["record_count"] == 3 and item["model_package_arn"] == "arn:p/1"


def test_a_transition_from_the_wrong_status_is_refused_and_writes_nothing(
    platform: Platform,
) -> None:
    table = platform.model_versions_table
    versions.start_training(table, "v1", {})
    with pytest.raises(versions.VersionTransitionError, match="v1 is training; it cannot become "):
        versions.promote(table, "v1", {"promoted_at": "t"})
    assert status(platform, "v1") == versions.TRAINING
    item = versions.get_version(table, "v1")
    assert item is not None and "promoted_at" not in item


def test_a_rejected_candidate_cannot_be_registered(platform: Platform) -> None:
    table = platform.model_versions_table
    versions.start_training(table, "v1", {})
    versions.record_gate_decision(table, "v1", decision_uri="s3://a/d.json", approved=False, at="t")
    assert status(platform, "v1") == versions.REJECTED
    with pytest.raises(versions.VersionTransitionError, match="rejected"):
        versions.register(table, "v1", {})


def test_repeating_a_transition_is_a_no_op_for_retried_steps(platform: Platform) -> None:
    table = platform.model_versions_table
    versions.start_training(table, "v1", {})
    versions.register(table, "v1", {"model_package_arn": "arn:p/1"})
    versions.register(table, "v1", {"model_package_arn": "arn:p/1"})
    assert status(platform, "v1") == versions.REGISTERED
    with pytest.raises(versions.VersionTransitionError, match="already moved past training"):
        versions.start_training(table, "v1", {})


def test_a_missing_version_is_named_not_created(platform: Platform) -> None:
    with pytest.raises(versions.VersionTransitionError, match="no item for v9"):
        versions.register(platform.model_versions_table, "v9", {})
    assert versions.get_version(platform.model_versions_table, "v9") is None


def test_rollback_and_restore_and_supersede(platform: Platform) -> None:
    table = platform.model_versions_table
    for version in ("v1", "v2"):
        versions.start_training(table, version, {})
        versions.register(table, version, {})
        versions.start_deploying(table, version, {})
    versions.promote(table, "v1", {})
    versions.promote(table, "v2", {})
    assert versions.supersede(table, "v1", {"superseded_by": "v2"})
    versions.roll_back(table, "v2", {"rollback_alarm": "a"})
    versions.restore(table, "v1", {})
    assert (status(platform, "v1"), status(platform, "v2")) == (
        versions.PRODUCTION,
        versions.ROLLED_BACK,
    )
    # v1 is production again, not superseded: a late supersede does nothing.
    versions.roll_back(table, "v1", {})
    assert not versions.supersede(table, "v1", {})


def test_a_failure_keeps_a_serving_version_in_production(platform: Platform) -> None:
    table = platform.model_versions_table
    versions.start_training(table, "v1", {})
    versions.register(table, "v1", {})
    versions.start_deploying(table, "v1", {})
    versions.promote(table, "v1", {})
    assert versions.fail(table, "v1", {"error": "NotifyFailed"}) == versions.PRODUCTION
    assert versions.fail(table, "v2", {"error": "PrepareFailed"}) == versions.FAILED
    assert status(platform, "v2") == versions.FAILED


def test_other_fields_cannot_smuggle_a_status_change(platform: Platform) -> None:
    versions.start_training(platform.model_versions_table, "v1", {})
    with pytest.raises(ValueError, match="named transition"):
        versions.set_fields(platform.model_versions_table, "v1", {"status": "production"})
