"""Gate per model line (moto): a line's run gates by its line's policy in force."""

from __future__ import annotations

import json

import pytest

from lambdas.gate.handler import handler
from tests.integration.aws_fixtures import FakeLambdaContext, Platform, aws_credentials, platform
from tests.integration.test_gate import POLICY, evaluation, event, put_output, put_version
from tuneloop import aws
from tuneloop.model_line_settings import ModelLineError, ModelLines
from tuneloop.operations.gate_policy import store_policy

__all__ = ["aws_credentials", "platform"]

# company_faq scores 9/10: the stage's floor (0.5) passes it, strict's (0.95) does not.
STRICT = {
    "suites": {
        "mmlu": {"role": "general", "metric": "acc", "delta": 0.05},
        "company_faq": {"role": "must_pass", "metric": "acc", "floor": 0.95},
    },
}
LINES = ModelLines.parse(
    [
        {"name": "strict", "datasets": ["faq"], "gate_policy": STRICT},
        {"name": "plain", "datasets": ["chat"]},
    ]
)


@pytest.fixture
def gate_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    monkeypatch.setenv("ARTIFACTS_BUCKET", platform.artifacts_bucket)
    monkeypatch.setenv("MODEL_VERSIONS_TABLE", platform.model_versions_table)
    monkeypatch.setenv("CONTROL_TABLE", platform.control_table)
    monkeypatch.setenv("GATE_POLICY", json.dumps(POLICY))
    monkeypatch.setenv("MODEL_LINES", LINES.to_json())
    put_output(platform, evaluation(candidate_mmlu=60, champion_mmlu=60))
    put_version(platform, "v2")
    return platform


def test_a_line_with_its_own_policy_is_gated_by_it(gate_env: Platform) -> None:
    result = handler({**event(), "model_line": "strict"}, FakeLambdaContext())

    assert result["approved"] is False
    assert "company_faq" in result["summary"]


def test_a_line_without_a_policy_is_gated_by_the_stages(gate_env: Platform) -> None:
    result = handler({**event(), "model_line": "plain"}, FakeLambdaContext())

    assert result["approved"] is True


def test_an_admins_override_for_the_line_wins(gate_env: Platform) -> None:
    # Given the endpoint's override (which a line ignores) and strict's own
    lenient = {"suites": {"mmlu": {"role": "general", "metric": "acc", "delta": 0.05}}}
    store_policy(gate_env.control_table, STRICT, by="admin")
    store_policy(gate_env.control_table, lenient, by="admin", model_line="strict")

    assert handler({**event(), "model_line": "strict"}, FakeLambdaContext())["approved"] is True
    # plain falls back to the stage's policy, not to the endpoint's override
    put_version(gate_env, "v3")
    plain = {**event(model_version="v3"), "model_line": "plain"}
    assert handler(plain, FakeLambdaContext())["approved"] is True


def test_an_unknown_line_fails_naming_the_lines(gate_env: Platform) -> None:
    with pytest.raises(ModelLineError, match=r"no model line 'chat' \(lines: strict, plain\)"):
        handler({**event(), "model_line": "chat"}, FakeLambdaContext())


def test_the_decision_names_the_line(gate_env: Platform) -> None:
    result = handler({**event(), "model_line": "plain"}, FakeLambdaContext())

    bucket, key = result["decision_s3_uri"].removeprefix("s3://").split("/", 1)
    decision = json.loads(aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read())
    assert decision["model_line"] == "plain"
    assert decision["policy"]["suites"].keys() == {"mmlu", "company_faq"}  # the stage's policy
