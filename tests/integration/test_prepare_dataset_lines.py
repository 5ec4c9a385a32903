"""PrepareDataset for a model line (moto): the line's datasets, its champion, its policy."""

from __future__ import annotations

import json
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
from tuneloop.benchmarks.store import BenchmarkStore
from tuneloop.datasets import (
    INCREMENTAL,
    SCAN,
    DatasetLocations,
    EmptyDatasetError,
    prepare_dataset,
)
from tuneloop.model_line_settings import ModelLineError, ModelLines
from tuneloop.operations.gate_policy import store_policy

__all__ = ["aws_credentials", "platform"]

LINES = ModelLines.parse(
    [
        {"name": "support", "datasets": ["acme_support"]},
        {
            "name": "search",
            "datasets": ["wiki", "intranet"],
            "gate_policy": {"suites": {"acme_search": {"role": "target", "metric": "acc"}}},
        },
    ]
)
STAGE_POLICY = {"suites": {"company_faq": {"role": "must_pass", "floor": 0.5}}}
RUN = "v0003-20260101-000000-search"
SEARCH_CHAMPION = "v0002-20251201-000000-search"


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "prepare_dataset")
    monkeypatch.setenv("MODEL_LINES", LINES.to_json())
    monkeypatch.setenv("GATE_POLICY", json.dumps(STAGE_POLICY))
    monkeypatch.setenv("HELDOUT_FRACTION", "0")  # about the selection, not the split
    # Drops of both lines' datasets and of a dataset no line lists
    put_drop(platform, "d-wiki", "wiki", {"w1": {"text": "wiki one"}, "w2": {"text": "wiki two"}})
    put_drop(platform, "d-intra", "intranet", {"i1": {"text": "intranet"}})
    put_drop(platform, "d-support", "acme_support", {"s1": {"text": "support"}})
    put_drop(platform, "d-hr", "hr", {"h1": {"text": "hr"}})
    # Each line's own production version; the endpoint's item is another model
    control = aws.table(platform.control_table)
    for key, version in (
        ("production#search", SEARCH_CHAMPION),
        ("production#support", "v0001-20251101-000000-support"),
        ("production", "v0000-20251001-000000"),
    ):
        control.put_item(
            Item={
                "key": key,
                "model_version": version,
                "endpoint_config_name": "",
                "model_data_url": f"s3://tuneloop-artifacts/jobs/{version}-train/model.tar.gz",
            }
        )
    return platform


def event(model_line: str | None = "search") -> dict[str, Any]:
    run_input: dict[str, Any] = {"trigger": "manual"}
    if model_line is not None:
        run_input["model_line"] = model_line
    return {"execution_name": RUN, "execution_arn": "arn:run", "input": run_input}


def train_texts(platform: Platform, model_version: str = RUN) -> list[str]:
    body = aws.s3().get_object(
        Bucket=platform.curated_bucket, Key=f"datasets/{model_version}/train.jsonl"
    )["Body"]
    return sorted(json.loads(line)["text"] for line in body.read().splitlines())


def test_a_line_trains_on_its_datasets_only_against_its_champion(env: Platform) -> None:
    # When a run of the search line prepares its dataset
    result = handler(event(), lambda_context())

    # Then only wiki and intranet records are exported
    assert train_texts(env) == ["intranet", "wiki one", "wiki two"]
    # ... the champion is search's production version, not the endpoint's or support's
    assert result["model_line"] == "search"
    assert result["champion_version"] == SEARCH_CHAMPION
    assert result["champion_model_data"].endswith(f"{SEARCH_CHAMPION}-train/model.tar.gz")
    # ... the manifest and the version item name the line
    manifest = json.loads(
        aws.s3()
        .get_object(Bucket=env.curated_bucket, Key=f"datasets/{RUN}/manifest.json")["Body"]
        .read()
    )
    assert manifest["model_line"] == "search"
    assert manifest["datasets"] == {"intranet": 1, "wiki": 2}
    # (the champion has no lineage here: a scan of the Records table, filtered to the line)
    assert manifest["read"] == "scan"
    item = aws.table(env.model_versions_table).get_item(Key={"model_version": RUN})["Item"]
    assert (item["model_line"], item["parent_version"]) == ("search", SEARCH_CHAMPION)


def test_both_reads_select_the_same_records_of_the_line(env: Platform) -> None:
    where = DatasetLocations(
        records_table=env.records_table,
        drops_table=env.drops_table,
        control_table=env.control_table,
        curated_bucket=env.curated_bucket,
        artifacts_bucket=env.artifacts_bucket,
        model_versions_table=env.model_versions_table,
    )
    exported = {}
    for read in (SCAN, INCREMENTAL):
        name = f"v0004-{read}-support"
        prepare_dataset(
            execution_name=name, execution_arn="", where=where, read=read, line=LINES.get("support")
        )
        exported[read] = train_texts(env, name)
    assert exported == {SCAN: ["support"], INCREMENTAL: ["support"]}
    # The incremental read listed only the line's drops
    manifest = aws.s3().get_object(
        Bucket=env.curated_bucket, Key="datasets/v0004-incremental-support/manifest.json"
    )["Body"]
    assert json.loads(manifest.read())["drops"] == {
        "d-support": {"records": 1, "dataset": "acme_support"}
    }


def test_the_lines_gate_policy_decides_which_suites_are_frozen(env: Platform) -> None:
    # Given both suites stored
    benchmarks = BenchmarkStore(table=env.benchmarks_table, bucket=env.artifacts_bucket)
    body = b'{"id": "q", "prompt": "Q?", "choices": ["a", "b"], "answer": 0}\n'
    search_suite, _ = benchmarks.create_from_bytes("acme_search", body, source="t")
    faq_suite, _ = benchmarks.create_from_bytes("company_faq", body, source="t")

    # Then search freezes its own policy's suite, support (no policy of its own) the stage's
    assert handler(event("search"), lambda_context())["benchmark_versions"] == {
        "acme_search": search_suite.version
    }
    support = {**event("support"), "execution_name": "v0005-20260101-000000-support"}
    assert handler(support, lambda_context())["benchmark_versions"] == {
        "company_faq": faq_suite.version
    }

    # And an admin's override for support (gate_policy#support) replaces its stage policy
    store_policy(
        env.control_table,
        {"suites": {"acme_search": {"role": "general", "delta": 0.1}}},
        by="admin",
        model_line="support",
    )
    again = {**support, "execution_name": "v0006-20260101-000000-support"}
    assert handler(again, lambda_context())["benchmark_versions"] == {
        "acme_search": search_suite.version
    }


def test_a_line_without_records_names_the_line_and_its_datasets(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {"name": "chat", "datasets": ["chats"]}
    lines = ModelLines.parse([*(line.to_dict() for line in LINES.lines), extra])
    monkeypatch.setenv("MODEL_LINES", lines.to_json())

    with pytest.raises(EmptyDatasetError, match=r"model line 'chat' \(datasets: chats\)"):
        handler(event("chat"), lambda_context())


def test_a_run_without_a_line_on_a_deployment_with_lines_fails_clearly(env: Platform) -> None:
    with pytest.raises(ModelLineError, match=r"names no model line.*\(support, search\)"):
        handler(event(None), lambda_context())
    with pytest.raises(ModelLineError, match=r"no model line 'chat'"):
        handler(event("chat"), lambda_context())
