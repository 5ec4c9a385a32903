"""The operations CLI over moto: --json parses, tables show the values, exit codes, stderr."""

from __future__ import annotations

import json

import pytest

from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    Platform,
    aws_credentials,
    platform,
    put_version,
)
from tuneloop.cli import main
from tuneloop.operations.names import PlatformNames


def names_of(platform: Platform) -> PlatformNames:  # noqa: F811
    return PlatformNames(
        stage="test",
        raw_bucket=platform.raw_bucket,
        curated_bucket=platform.curated_bucket,
        artifacts_bucket=platform.artifacts_bucket,
        records_table=platform.records_table,
        drops_table=platform.drops_table,
        model_versions_table=platform.model_versions_table,
        control_table=platform.control_table,
        benchmarks_table=platform.benchmarks_table,
        audit_table=platform.audit_table,
        endpoint_name=platform.endpoint_name,
    )


@pytest.fixture
def names(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> PlatformNames:  # noqa: F811
    resolved = names_of(platform)
    seen: list[str] = []

    def for_stage(stage: str) -> PlatformNames:
        seen.append(stage)
        return resolved

    monkeypatch.setattr(PlatformNames, "for_stage", staticmethod(for_stage))
    monkeypatch.setattr("tuneloop.operations.audit.Actor.from_iam", _actor)
    for age, (version, status) in enumerate((("v0002", "registered"), ("v0001", "deployed"))):
        put_version(platform.model_versions_table, version, days_ago=age, status=status)
    return resolved


def _actor(source: str) -> object:
    from tuneloop.operations.audit import Actor

    return Actor(name="arn:aws:iam::123456789012:user/ci", kind="iam", source=source)


def test_models_list_json_parses_and_table_shows_versions(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "list", "--json", "--stage", "test"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["version"] for row in rows} == {"v0001", "v0002"}
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "v0001" in out and "v0002" in out


def test_unknown_version_exits_2_with_advice_on_stderr(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "show", "v0099"]) == 2
    captured = capsys.readouterr()
    assert "v0099" in captured.err and "tuneloop models list" in captured.err
    assert captured.out == ""
    assert main(["deploy", "v0099"]) == 2


def test_freeze_then_unfreeze_and_the_audit_trail(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["freeze", "--reason", "holiday", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frozen"] is True
    # freezing twice is not allowed now
    assert main(["freeze", "--reason", "again"]) == 3
    assert "frozen" in capsys.readouterr().err
    assert main(["unfreeze"]) == 0
    assert main(["unfreeze"]) == 3
    capsys.readouterr()
    assert main(["audit", "--json", "--action", "freeze"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 1
    assert records[0]["actor"].endswith("user/ci")
    assert records[0]["after"]["reason"] == "holiday"
    assert main(["audit"]) == 0
    assert "unfreeze" in capsys.readouterr().out


def test_freeze_without_reason_is_a_usage_error(names: PlatformNames) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["freeze"])
    assert exited.value.code == 2


def test_rollback_with_nothing_in_production_is_a_conflict(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollback"]) == 3
    assert "nothing is in production" in capsys.readouterr().err


def test_status_json_has_production_and_alarms(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert set(status) == {"production", "alarms"}


def test_backfill_indexes_lists_items_written_before_the_month_indexes(
    names: PlatformNames,
    platform: Platform,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tuneloop import aws

    # Items as an earlier version wrote them: no month attribute, so not on by_month
    drops = aws.table(platform.drops_table)
    drops.put_item(Item={"drop_id": "a" * 64, "started_at": "2026-11-30T10:00:00+00:00"})
    drops.put_item(Item={"drop_id": "a" * 64 + "#0", "segment_of": "a" * 64,
                         "started_at": "2026-11-30T10:00:01+00:00"})  # fmt: skip
    aws.table(platform.model_versions_table).put_item(
        Item={"model_version": "v0000", "created_at": "2026-11-29T00:00:00+00:00"}
    )
    assert main(["models", "list", "--json"]) == 0
    assert "v0000" not in capsys.readouterr().out

    assert main(["backfill-indexes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"drops_indexed": 1, "versions_indexed": 1}

    assert main(["models", "list", "--json"]) == 0
    assert "v0000" in {row["version"] for row in json.loads(capsys.readouterr().out)}
    segment = drops.get_item(Key={"drop_id": "a" * 64 + "#0"})["Item"]
    assert "started_month" not in segment  # segments stay off the index
    assert main(["backfill-indexes", "--json"]) == 0  # once is enough
    assert json.loads(capsys.readouterr().out) == {"drops_indexed": 0, "versions_indexed": 0}


def test_models_benchmark_starts_a_run_or_says_why_not(
    names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    # No benchmark run state machine in these names: the command says which output is missing
    assert main(["models", "benchmark", "v0001", "faq"]) != 0
    assert "no output BenchmarkRunStateMachineArn" in capsys.readouterr().err
