"""Benchmark runs over moto: the prepare and record steps, the operator's action, the history."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    ACCOUNT,
    Platform,
    aws_credentials,
    platform,
    put_version,
)
from tests.integration.test_operations_cli import names_of
from tuneloop import aws
from tuneloop.benchmarks.runs import (
    BenchmarkRunError,
    RunRequest,
    prepare_run,
    record_run,
    runs_of,
)
from tuneloop.benchmarks.store import BenchmarkNotFoundError, BenchmarkStore
from tuneloop.operations import actions, views
from tuneloop.operations.audit import Actor, list_records

PERSON = Actor(name="ops (operator)", kind="user", source="console")
FAQ = "".join(
    json.dumps({"id": f"q{n}", "prompt": f"Question {n}?", "choices": [" yes", " no"],
                "answer": n % 2}) + "\n"
    for n in range(6)
)  # fmt: skip


def store_of(platform: Platform) -> BenchmarkStore:  # noqa: F811
    return BenchmarkStore(table=platform.benchmarks_table, bucket=platform.artifacts_bucket)


def trained(platform: Platform, version: str = "v0001") -> None:  # noqa: F811
    put_version(
        platform.model_versions_table,
        version,
        status="registered",
        model_data_url=f"s3://{platform.artifacts_bucket}/jobs/{version}-train/output/model.tar.gz",
    )


def test_prepare_freezes_only_the_suite_and_finds_the_archive(platform: Platform) -> None:  # noqa: F811
    store = store_of(platform)
    first, _ = store.create_from_bytes("faq", FAQ.encode(), source="faq.jsonl")
    store.create_from_bytes("other", FAQ.encode(), source="other.jsonl")
    aws.s3().put_object(Bucket=platform.artifacts_bucket, Key="benchmarks/loose.jsonl", Body=FAQ)
    trained(platform)

    prepared = prepare_run(
        RunRequest("v0001", "faq"),
        run_id="run-1",
        store=store,
        model_versions_table=platform.model_versions_table,
        mmlu_subset_size="50",
    )

    assert prepared["model_data"].endswith("/jobs/v0001-train/output/model.tar.gz")
    assert (
        prepared["benchmarks_s3_uri"] == f"s3://{platform.artifacts_bucket}/runs/run-1/benchmarks/"
    )
    assert prepared["benchmark_versions"] == {"faq": first.version}
    assert prepared["mmlu_subset_size"] == "0"  # this suite only
    listed = aws.s3().list_objects_v2(Bucket=platform.artifacts_bucket, Prefix="runs/run-1/")
    assert [o["Key"] for o in listed["Contents"]] == ["runs/run-1/benchmarks/faq.jsonl"]
    mmlu = prepare_run(
        RunRequest("v0001", "mmlu"),
        run_id="run-2",
        store=store,
        model_versions_table=platform.model_versions_table,
        mmlu_subset_size="50",
    )
    assert (mmlu["mmlu_subset_size"], mmlu["benchmark_versions"]) == ("50", {})


def test_prepare_refuses_what_cannot_be_run(platform: Platform) -> None:  # noqa: F811
    store = store_of(platform)
    put_version(platform.model_versions_table, "v0002", status="training")
    trained(platform)

    def prepare(version: str, suite: str, spec: str = "latest") -> None:
        prepare_run(
            RunRequest(version, suite, spec),
            run_id="r",
            store=store,
            model_versions_table=platform.model_versions_table,
            mmlu_subset_size="0",
        )

    with pytest.raises(BenchmarkRunError, match="no model version 'v0404'"):
        prepare("v0404", "faq")
    with pytest.raises(BenchmarkRunError, match=r"no model archive yet.*training"):
        prepare("v0002", "faq")
    with pytest.raises(BenchmarkRunError, match="no benchmark 'faq'"):
        prepare("v0001", "faq")
    store.create_from_bytes("faq", FAQ.encode(), source="faq.jsonl")
    with pytest.raises(BenchmarkNotFoundError):
        prepare("v0001", "faq", "deadbeef")
    with pytest.raises(BenchmarkRunError, match="'suite' is missing"):
        RunRequest.parse({"model_version": "v0001"})


def _job_output(platform: Platform, job: str, report: dict) -> dict[str, str]:  # noqa: F811
    body = json.dumps(report).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("evaluation.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    output_path = f"s3://{platform.artifacts_bucket}/jobs/"
    aws.s3().put_object(
        Bucket=platform.artifacts_bucket,
        Key=f"jobs/{job}/output/output.tar.gz",
        Body=archive.getvalue(),
    )
    return {"job_name": job, "output_path": output_path}


def test_record_appends_the_score_once_per_run_and_the_history_shows_it(
    platform: Platform,  # noqa: F811
) -> None:
    trained(platform)
    report = {
        "benchmarks": {"faq": {"n_items": 6, "version": "abc123"}},
        "results": {"candidate": {"faq": {"acc": 0.5, "acc_stderr": 0.1, "n_items": 6}}},
    }
    evaluation = _job_output(platform, "run-1-eval", report)
    prepared = {"model_version": "v0001", "suite": "faq"}

    entry = record_run(
        prepared, evaluation, run_id="run-1", model_versions_table=platform.model_versions_table
    )
    again = record_run(  # a retried step
        prepared, evaluation, run_id="run-1", model_versions_table=platform.model_versions_table
    )

    assert (entry["metric"], entry["value"], entry["version"]) == ("acc", 0.5, "abc123")
    assert entry["ci_low"] == pytest.approx(0.5 - 1.959964 * 0.1, abs=1e-4)
    assert again["run_id"] == "run-1"
    item = aws.table(platform.model_versions_table).get_item(Key={"model_version": "v0001"})
    assert [r["run_id"] for r in runs_of(item["Item"])] == ["run-1"]
    (point,) = views.benchmark_history(names_of(platform), "faq")
    assert (point.model_version, point.value, point.benchmark_version) == ("v0001", 0.5, "abc123")
    assert point.status.startswith("benchmark run ")
    with pytest.raises(BenchmarkRunError, match="has no mmlu"):
        record_run(
            {"model_version": "v0001", "suite": "mmlu"},
            evaluation,
            run_id="run-2",
            model_versions_table=platform.model_versions_table,
        )


def _with_machine(platform: Platform):  # noqa: F811
    arn = aws.client("stepfunctions").create_state_machine(
        name="benchmark-run",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/tuneloop-states",
    )["stateMachineArn"]
    names = names_of(platform)
    return type(names)(**{**names.__dict__, "benchmark_run_state_machine_arn": arn})


def test_an_operator_starts_a_run_and_it_is_audited(platform: Platform) -> None:  # noqa: F811
    names = _with_machine(platform)
    version, _ = store_of(platform).create_from_bytes("faq", FAQ.encode(), source="faq.jsonl")
    trained(platform)

    started = actions.run_benchmark(names, PERSON, "v0001", "faq")

    execution = aws.stepfunctions().describe_execution(executionArn=started.execution_arn)
    assert json.loads(execution["input"]) == {
        "model_version": "v0001",
        "suite": "faq",
        "version": version.version,  # "latest" resolved when the run was asked for
    }
    assert started.execution_name.startswith("v0001-faq-")
    (record,) = list_records(names.audit_table, action="benchmark_run_started")
    assert (record.actor, record.target) == (PERSON.name, "benchmark faq")
    assert record.after["model_version"] == "v0001"
    assert [run.name for run in views.benchmark_runs(names)] == [started.execution_name]


def test_the_action_refuses_with_what_to_do(platform: Platform) -> None:  # noqa: F811
    names = _with_machine(platform)
    trained(platform)
    put_version(platform.model_versions_table, "v0002", status="training")
    cases = [
        ("v0404", "faq", 2, "tuneloop models list"),
        ("v0002", "faq", 3, "no model archive yet"),
        ("v0001", "nope", 2, "tuneloop benchmarks list"),
        ("v0001", "Bad Name!", 2, "tuneloop benchmarks list"),
    ]
    for version, suite, code, hint in cases:
        with pytest.raises(actions.ActionError, match=hint) as refused:
            actions.run_benchmark(names, PERSON, version, suite)
        assert refused.value.exit_code == code
    aws.s3().put_object(Bucket=platform.artifacts_bucket, Key="benchmarks/loose.jsonl", Body=FAQ)
    assert actions.run_benchmark(names, PERSON, "v0001", "loose").version == "latest"
