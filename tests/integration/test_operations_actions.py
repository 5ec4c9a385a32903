"""Operations actions over moto: refusals with exit codes, freeze/gate policy/benchmark audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    Platform,
    aws_credentials,
    platform,
    put_version,
)
from tests.integration.test_operations_cli import names_of
from tuneloop.operations import actions, audit
from tuneloop.operations.actions import ActionError, BenchmarkValidationError
from tuneloop.operations.audit import Actor
from tuneloop.operations.names import NamesError, PlatformNames

OPERATOR = Actor(name="ops (operator)", kind="user", source="console")
EXAMPLE = Path(__file__).parents[2] / "examples" / "benchmarks" / "acme_support.jsonl"


@pytest.fixture
def names(platform: Platform) -> PlatformNames:  # noqa: F811
    for age, (version, status) in enumerate((("v0002", "rejected"), ("v0001", "deployed"))):
        put_version(platform.model_versions_table, version, days_ago=age, status=status)
    return names_of(platform)


def test_deploy_refuses_an_unknown_version_with_usage(names: PlatformNames) -> None:
    with pytest.raises(ActionError) as refused:
        actions.deploy_version(names, OPERATOR, "v0099")
    assert refused.value.exit_code == 2
    assert "tuneloop models list" in str(refused.value)


def test_deploy_refuses_a_rejected_version_as_a_conflict(names: PlatformNames) -> None:
    with pytest.raises(ActionError) as refused:
        actions.deploy_version(names, OPERATOR, "v0002")
    assert refused.value.exit_code == 3
    assert "rejected" in str(refused.value)


def test_deploy_refuses_an_approved_version_without_a_package(names: PlatformNames) -> None:
    with pytest.raises(ActionError) as refused:
        actions.deploy_version(names, OPERATOR, "v0001")
    assert refused.value.exit_code == 3
    assert "model package" in str(refused.value)


def test_freeze_needs_a_reason_and_is_audited_with_before_and_after(
    names: PlatformNames,
) -> None:
    with pytest.raises(ActionError) as refused:
        actions.freeze(names, OPERATOR, "  ")
    assert refused.value.exit_code == 2
    assert audit.list_records(names.audit_table) == []

    state = actions.freeze(names, OPERATOR, "incident 42")
    assert state.frozen and actions.freeze_state(names).frozen
    record = audit.list_records(names.audit_table, action="freeze")[0]
    assert record.actor == "ops (operator)"
    assert record.before["frozen"] is False
    assert record.after["frozen"] is True and record.after["reason"] == "incident 42"

    actions.unfreeze(names, OPERATOR)
    assert not actions.freeze_state(names).frozen
    unfrozen = audit.list_records(names.audit_table, action="unfreeze")[0]
    assert unfrozen.before["frozen"] is True and unfrozen.after["frozen"] is False


def test_set_gate_policy_validates_then_audits(names: PlatformNames) -> None:
    with pytest.raises(ActionError) as refused:
        actions.set_gate_policy(names, OPERATOR, {"suites": {"mmlu": {"role": "nonsense"}}})
    assert refused.value.exit_code == 2
    assert "nothing was changed" in str(refused.value)

    policy = {"suites": {"mmlu": {"role": "general", "delta": 0.02}}}
    change = actions.set_gate_policy(names, OPERATOR, policy)
    assert change.after["suites"]["mmlu"]["delta"] == 0.02
    assert actions.gate_policy(names)["suites"]["mmlu"]["delta"] == 0.02
    record = audit.list_records(names.audit_table, action="gate_policy_changed")[0]
    assert record.after["suites"]["mmlu"]["delta"] == 0.02


def test_create_benchmark_reports_every_bad_line(names: PlatformNames) -> None:
    good = EXAMPLE.read_text().splitlines()[0]
    lines = "\n".join([good, "{not json", json.dumps({"question": 1})]) + "\n"
    with pytest.raises(BenchmarkValidationError) as refused:
        actions.create_benchmark(names, OPERATOR, "broken", lines)
    assert refused.value.exit_code == 2
    assert {p.line for p in refused.value.problems} >= {2, 3}
    assert audit.list_records(names.audit_table, action="benchmark_created") == []


def test_stop_run_without_a_pipeline_says_which_stack_to_deploy(names: PlatformNames) -> None:
    with pytest.raises(NamesError) as refused:
        actions.stop_run(names, OPERATOR, "no-such-run")
    assert "TuneLoop-test-Pipeline" in str(refused.value)
