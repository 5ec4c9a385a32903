"""Gate handler against moto: the Evaluate report in S3 in, the decision and the item out."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pytest

from lambdas.gate.handler import Env, handler
from tests.integration.aws_fixtures import FakeLambdaContext, Platform, aws_credentials, platform
from tuneloop import aws
from tuneloop.envmodel import EnvError
from tuneloop.gating.policy import PolicyError
from tuneloop.gating.service import GateError, GateEventError

__all__ = ["aws_credentials", "platform"]  # fixtures used by name

JOB = "run-1-eval"
OUTPUT_PATH = "s3://tuneloop-artifacts/jobs"
POLICY = {
    "suites": {
        "mmlu": {"role": "general", "metric": "acc", "delta": 0.05},
        "company_faq": {"role": "must_pass", "metric": "acc", "floor": 0.5},
    },
    "bootstrap_samples": 1000,
    "confidence": 0.95,
    "seed": 0,
}


def suite(correct: int, n: int) -> dict[str, Any]:
    items = [{"id": f"q{i}", "score": float(i < correct), "prediction": 0} for i in range(n)]
    return {"acc": correct / n, "acc_stderr": 0.0, "acc_norm": correct / n, "items": items}


def evaluation(candidate_mmlu: int, champion_mmlu: int | None, faq: int = 9) -> dict[str, Any]:
    results: dict[str, Any] = {
        "candidate": {"mmlu": suite(candidate_mmlu, 100), "company_faq": suite(faq, 10)}
    }
    if champion_mmlu is not None:
        results["champion"] = {"mmlu": suite(champion_mmlu, 100), "company_faq": suite(9, 10)}
    return {
        "benchmarks": {
            "mmlu": {"version": "a" * 64, "n_items": 100, "kind": "multiple_choice"},
            "company_faq": {"version": "b" * 64, "n_items": 10, "kind": "multiple_choice"},
        },
        "results": results,
    }


def put_output(platform: Platform, report: dict[str, Any], job: str = JOB) -> None:
    """What SageMaker uploads: SM_OUTPUT_DATA_DIR as <output_path>/<job>/output/output.tar.gz."""
    body = json.dumps(report).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("evaluation.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    aws.s3().put_object(
        Bucket=platform.artifacts_bucket,
        Key=f"jobs/{job}/output/output.tar.gz",
        Body=buffer.getvalue(),
    )


def put_version(platform: Platform, model_version: str) -> None:
    aws.table(platform.model_versions_table).put_item(
        Item={"model_version": model_version, "status": "training"}
    )


def event(model_version: str = "v2", champion_version: str = "v1") -> dict[str, Any]:
    return {
        "model_version": model_version,
        "evaluation": {"job_name": JOB, "output_path": OUTPUT_PATH},
        "champion_version": champion_version,
    }


@pytest.fixture
def gate_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    monkeypatch.setenv("ARTIFACTS_BUCKET", platform.artifacts_bucket)
    monkeypatch.setenv("MODEL_VERSIONS_TABLE", platform.model_versions_table)
    monkeypatch.setenv("CONTROL_TABLE", platform.control_table)
    monkeypatch.setenv("GATE_POLICY", json.dumps(POLICY))
    return platform


def stored_decision(platform: Platform, model_version: str) -> dict[str, Any]:
    body = aws.s3().get_object(
        Bucket=platform.artifacts_bucket, Key=f"gate/{model_version}/decision.json"
    )["Body"]
    return json.loads(body.read())


def test_env_model_matches_the_contract() -> None:
    from tuneloop.envmodel import env_var_names

    assert env_var_names(Env) == {
        "ARTIFACTS_BUCKET",
        "MODEL_VERSIONS_TABLE",
        "CONTROL_TABLE",
        "GATE_POLICY",
        "MODEL_LINES",
    }


def test_approved_candidate(gate_env: Platform) -> None:
    put_output(gate_env, evaluation(candidate_mmlu=60, champion_mmlu=60))
    put_version(gate_env, "v2")
    result = handler(event(), FakeLambdaContext())
    uri = f"s3://{gate_env.artifacts_bucket}/gate/v2/decision.json"
    assert result == {
        "approved": True,
        "decision_s3_uri": uri,
        "report_s3_uri": f"s3://{gate_env.artifacts_bucket}/gate/v2/report.html",
        "summary": "approved: 2 checks passed",
    }
    decision = stored_decision(gate_env, "v2")
    assert decision["approved"] is True
    assert [c["suite"] for c in decision["comparisons"]] == ["mmlu", "company_faq"]
    assert decision["model_version"] == "v2" and decision["champion_version"] == "v1"
    assert decision["benchmarks"]["mmlu"]["version"] == "a" * 64
    item = aws.table(gate_env.model_versions_table).get_item(Key={"model_version": "v2"})["Item"]
    assert item["decision_s3_uri"] == uri
    assert item["status"] == "training"  # Register moves it on, not the gate


def test_regression_is_rejected_and_recorded(gate_env: Platform) -> None:
    put_output(gate_env, evaluation(candidate_mmlu=40, champion_mmlu=70))
    put_version(gate_env, "v2")
    result = handler(event(), FakeLambdaContext())
    assert result["approved"] is False
    assert result["summary"].startswith("rejected: mmlu: may be worse than the champion")
    decision = stored_decision(gate_env, "v2")
    mmlu = decision["comparisons"][0]
    assert mmlu["passed"] is False and mmlu["ci_low"] < -0.05 and mmlu["mcnemar_p"] < 0.001
    item = aws.table(gate_env.model_versions_table).get_item(Key={"model_version": "v2"})["Item"]
    assert item["status"] == "rejected"
    assert item["decision_s3_uri"] == result["decision_s3_uri"]


def test_first_model_is_gated_on_floors_only(gate_env: Platform) -> None:
    put_output(gate_env, evaluation(candidate_mmlu=10, champion_mmlu=None, faq=4))
    put_version(gate_env, "v1")
    result = handler(event("v1", champion_version=""), FakeLambdaContext())
    assert result["approved"] is False
    reasons = stored_decision(gate_env, "v1")["reasons"]
    assert any("no champion" in reason for reason in reasons)
    assert any("below the floor" in reason for reason in reasons)


def test_champion_expected_but_not_evaluated_is_rejected(gate_env: Platform) -> None:
    put_output(gate_env, evaluation(candidate_mmlu=60, champion_mmlu=None))
    put_version(gate_env, "v2")
    assert handler(event(champion_version="v1"), FakeLambdaContext())["approved"] is False


def test_missing_report_or_item_fails_loudly(gate_env: Platform) -> None:
    put_version(gate_env, "v2")
    with pytest.raises(GateError, match=r"output\.tar\.gz not found"):
        handler(event(), FakeLambdaContext())
    put_output(gate_env, evaluation(candidate_mmlu=60, champion_mmlu=60))
    with pytest.raises(GateError, match="no item for model_version 'v9'"):
        handler(event("v9"), FakeLambdaContext())
    scan = aws.table(gate_env.model_versions_table).scan()["Items"]
    assert [item["model_version"] for item in scan] == ["v2"]  # no half item created


def test_bad_input_and_configuration_name_the_field(
    gate_env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(GateEventError, match=r"evaluation\.job_name"):
        handler(
            {"model_version": "v2", "evaluation": {"output_path": OUTPUT_PATH}}, FakeLambdaContext()
        )
    monkeypatch.setenv("GATE_POLICY", json.dumps({"suites": {"mmlu": {"role": "general"}}}))
    with pytest.raises(PolicyError, match=r"suites\.mmlu\.delta"):
        handler(event(), FakeLambdaContext())
    monkeypatch.delenv("GATE_POLICY")
    with pytest.raises(EnvError, match="GATE_POLICY"):
        handler(event(), FakeLambdaContext())


def test_report_html_is_written_next_to_the_decision_with_the_frozen_versions(
    gate_env: Platform,
) -> None:
    # Given an evaluation on the versions PrepareDataset froze for the run
    put_output(gate_env, evaluation(candidate_mmlu=60, champion_mmlu=55))
    put_version(gate_env, "v2")
    frozen = {"company_faq": "b" * 64}

    # When the gate runs
    result = handler({**event(), "benchmark_versions": frozen}, FakeLambdaContext())

    # Then the decision names the versions both models were scored on ...
    decision = stored_decision(gate_env, "v2")
    assert decision["benchmark_versions"] == {"company_faq": "b" * 64, "mmlu": "a" * 64}
    assert "same job" in decision["benchmark_versions_note"]
    # ... and the HTML report sits beside it, with the suites' numbers
    key = "gate/v2/report.html"
    assert result["report_s3_uri"] == f"s3://{gate_env.artifacts_bucket}/{key}"
    page = aws.s3().get_object(Bucket=gate_env.artifacts_bucket, Key=key)["Body"].read().decode()
    assert page.startswith("<!DOCTYPE html>") and "APPROVED" in page
    mmlu = decision["comparisons"][0]
    assert f"{mmlu['diff']:+.3f} [{mmlu['ci_low']:+.3f}, {mmlu['ci_high']:+.3f}]" in page


def test_an_evaluation_on_other_versions_than_the_frozen_ones_is_rejected(
    gate_env: Platform,
) -> None:
    put_output(gate_env, evaluation(candidate_mmlu=60, champion_mmlu=60))
    put_version(gate_env, "v2")
    result = handler(
        {**event(), "benchmark_versions": {"company_faq": "c" * 64}}, FakeLambdaContext()
    )
    assert result["approved"] is False
    assert "company_faq: frozen at benchmark version cccccccccccc" in result["summary"]
