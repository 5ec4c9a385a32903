"""PrepareDataset freezes each run's benchmark versions (moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.prepare_dataset.handler import handler
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tests.integration.dataset_fixtures import put_drop
from tuneloop import aws
from tuneloop.benchmarks.store import BenchmarkNotFoundError, BenchmarkStore, validate_bytes
from tuneloop.evaluation.errors import BenchmarkError

__all__ = ["aws_credentials", "platform"]

RUN = "v0003-20260101-000000"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def jsonl(*answers: int) -> bytes:
    lines = [
        {"id": f"q{i}", "prompt": f"Q{i}?", "choices": ["yes", "no"], "answer": a}
        for i, a in enumerate(answers)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def policy(**versions: str) -> str:
    suites: dict[str, Any] = {"mmlu": {"role": "general", "delta": 0.05}}
    for name in ("company_faq", "safety"):
        suites[name] = {"role": "must_pass", "floor": 0.5}
        if name in versions:
            suites[name]["version"] = versions[name]
    return json.dumps({"suites": suites})


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "prepare_dataset")
    put_drop(platform, "drop", "d", {"r": {"text": "hello"}})
    return platform


def store(platform: Platform) -> BenchmarkStore:
    return BenchmarkStore(table=platform.benchmarks_table, bucket=platform.artifacts_bucket)


def read(platform: Platform, key: str) -> bytes:
    return aws.s3().get_object(Bucket=platform.artifacts_bucket, Key=key)["Body"].read()


def test_latest_versions_are_copied_into_the_run_and_stay_frozen(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two versions of company_faq and one of safety (not a policy suite: "other")
    benchmarks = store(env)
    benchmarks.create_from_bytes("company_faq", jsonl(0), source="old", now=T0)
    latest, _ = benchmarks.create_from_bytes(
        "company_faq", jsonl(0, 1), source="new", now=T0 + timedelta(hours=1)
    )
    safety, _ = benchmarks.create_from_bytes("safety", jsonl(1), source="s", now=T0)
    benchmarks.create_from_bytes("other", jsonl(1, 1), source="o", now=T0)
    monkeypatch.setenv("GATE_POLICY", policy())

    # When the run prepares its dataset
    result = handler({"execution_name": RUN, "execution_arn": "arn"}, lambda_context())

    # Then the policy's custom suites are frozen at their latest versions in the run's prefix
    prefix = f"runs/{RUN}/benchmarks/"
    assert result["benchmarks_s3_uri"] == f"s3://{env.artifacts_bucket}/{prefix}"
    assert result["benchmark_versions"] == {
        "company_faq": latest.version,
        "safety": safety.version,
    }
    listed = aws.s3().list_objects_v2(Bucket=env.artifacts_bucket, Prefix=prefix)["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        f"{prefix}company_faq.jsonl",
        f"{prefix}safety.jsonl",
    ]
    assert read(env, f"{prefix}company_faq.jsonl") == jsonl(0, 1)

    # And a version created while the run is in flight does not change what it evaluates
    benchmarks.create_from_bytes("company_faq", jsonl(1, 1, 1), source="newer")
    assert read(env, f"{prefix}company_faq.jsonl") == jsonl(0, 1)


def test_a_pinned_version_is_frozen_instead_of_the_latest(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmarks = store(env)
    old, _ = benchmarks.create_from_bytes("company_faq", jsonl(0), source="old", now=T0)
    benchmarks.create_from_bytes("company_faq", jsonl(1), source="new", now=T0 + timedelta(1))
    monkeypatch.setenv("GATE_POLICY", policy(company_faq=old.version[:12]))

    result = handler({"execution_name": RUN}, lambda_context())

    assert result["benchmark_versions"] == {"company_faq": old.version}
    assert read(env, f"runs/{RUN}/benchmarks/company_faq.jsonl") == jsonl(0)


def test_a_missing_pinned_version_fails_before_the_export(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(env).create_from_bytes("company_faq", jsonl(0), source="old")
    monkeypatch.setenv("GATE_POLICY", policy(company_faq="deadbeef00"))

    with pytest.raises(BenchmarkNotFoundError, match="'company_faq': version 'deadbeef00'"):
        handler({"execution_name": RUN}, lambda_context())

    exported = aws.s3().list_objects_v2(Bucket=env.curated_bucket, Prefix="datasets/")
    assert exported.get("Contents", []) == []


def test_hand_uploaded_files_are_copied_into_the_run(env: Platform) -> None:
    # Given today's layout: files put straight under benchmarks/ (a custom file outside the
    # policy, an lm-eval task YAML) ...
    s3 = aws.s3()
    for file, body in {"facts.jsonl": jsonl(0, 0), "task.yaml": b"task: t\n"}.items():
        s3.put_object(Bucket=env.artifacts_bucket, Key=f"benchmarks/{file}", Body=body)
    # ... and company_faq both hand-uploaded and stored: the stored version wins
    s3.put_object(Bucket=env.artifacts_bucket, Key="benchmarks/company_faq.jsonl", Body=jsonl(1))
    stored, _ = store(env).create_from_bytes("company_faq", jsonl(0), source="faq")

    result = handler({"execution_name": RUN}, lambda_context())

    prefix = f"runs/{RUN}/benchmarks/"
    assert result["benchmark_versions"] == {"company_faq": stored.version}
    listed = s3.list_objects_v2(Bucket=env.artifacts_bucket, Prefix=prefix)["Contents"]
    assert sorted(o["Key"][len(prefix) :] for o in listed) == [
        "company_faq.jsonl",
        "facts.jsonl",
        "task.yaml",
    ]
    assert read(env, f"{prefix}company_faq.jsonl") == jsonl(0)
    assert read(env, f"{prefix}task.yaml") == b"task: t\n"


def test_a_hand_uploaded_policy_suite_is_frozen_with_its_content_hash(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.s3().put_object(
        Bucket=env.artifacts_bucket, Key="benchmarks/safety.jsonl", Body=jsonl(0, 1)
    )
    expected = validate_bytes("safety", jsonl(0, 1), "probe").version
    monkeypatch.setenv("GATE_POLICY", policy())

    result = handler({"execution_name": RUN}, lambda_context())
    assert result["benchmark_versions"] == {"safety": expected}

    # A pin that does not match the uploaded file fails the run, naming both
    monkeypatch.setenv("GATE_POLICY", policy(safety="0123456789ab"))
    with pytest.raises(BenchmarkNotFoundError, match=r"pins version '0123456789ab' but only"):
        handler({"execution_name": RUN}, lambda_context())


def test_a_bad_hand_uploaded_suite_fails_the_run_naming_line_and_field(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATE_POLICY", policy())
    bad = b'{"id": "a", "choices": ["x", "y"], "answer": 0}\n'
    aws.s3().put_object(Bucket=env.artifacts_bucket, Key="benchmarks/safety.jsonl", Body=bad)
    with pytest.raises(BenchmarkError, match=r"benchmarks/safety.jsonl line 1, field 'prompt'"):
        handler({"execution_name": RUN}, lambda_context())
