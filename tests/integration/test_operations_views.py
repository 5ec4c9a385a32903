"""Operations views over moto: list, detail and compare on seeded versions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    Platform,
    aws_credentials,
    platform,
    put_version,
)
from tests.integration.test_operations_cli import names_of
from tuneloop import aws
from tuneloop.operations import views
from tuneloop.operations.names import PlatformNames
from tuneloop.operations.views import ViewError


def score(value: str, version: str = "1", **extra: str) -> dict[str, Any]:
    row: dict[str, Any] = {"metric": "accuracy", "value": Decimal(value), "version": version}
    row.update({k: Decimal(v) for k, v in extra.items()})
    return row


@pytest.fixture
def names(platform: Platform) -> PlatformNames:  # noqa: F811
    table = platform.model_versions_table
    put_version(
        table,
        "v0001",
        days_ago=2,
        **{
            "status": "deployed",
            "scores": {"mmlu": score("0.40", ci_low="0.35", ci_high="0.45")},
        },
    )
    put_version(
        table,
        "v0002",
        days_ago=1,
        **{
            "status": "registered",
            "parent_version": "v0001",
            "scores": {
                "mmlu": score(
                    "0.46", diff="0.06", diff_ci_low="0.01", diff_ci_high="0.11", n_items="100"
                ),
                "faq": score("0.9", version="2"),
            },
        },
    )
    put_version(table, "v0003", status="rejected", scores={"mmlu": score("0.30", version="9")})
    return names_of(platform)


def test_list_models_newest_first_with_scores(names: PlatformNames) -> None:
    listed = views.list_models(names)
    assert [m.version for m in listed] == ["v0003", "v0002", "v0001"]
    first = listed[-1].to_dict()
    assert first["scores"][0]["suite"] == "mmlu"
    assert first["scores"][0]["ci_low"] == pytest.approx(0.35)


def test_model_detail_of_an_unknown_version_says_how_to_list(names: PlatformNames) -> None:
    with pytest.raises(ViewError, match="tuneloop models list"):
        views.model_detail(names, "v0404")


def test_compare_uses_the_gates_paired_difference_and_negates_it(names: PlatformNames) -> None:
    forward = {d.suite: d for d in views.compare_models(names, "v0001", "v0002").scores}
    mmlu = forward["mmlu"]
    assert mmlu.paired and mmlu.n_paired == 100
    assert (mmlu.diff, mmlu.ci_low, mmlu.ci_high) == pytest.approx((0.06, 0.01, 0.11))
    assert forward["faq"].a is None and "only b" in forward["faq"].how

    backward = {d.suite: d for d in views.compare_models(names, "v0002", "v0001").scores}
    assert (backward["mmlu"].diff, backward["mmlu"].ci_low, backward["mmlu"].ci_high) == (
        pytest.approx((-0.06, -0.11, -0.01))
    )


def test_compare_across_benchmark_versions_is_not_paired(names: PlatformNames) -> None:
    mmlu = {d.suite: d for d in views.compare_models(names, "v0001", "v0003").scores}["mmlu"]
    assert not mmlu.paired and mmlu.same_benchmark_version is False
    assert mmlu.diff == pytest.approx(0.30 - 0.40)


def test_compare_a_version_with_itself_is_refused(names: PlatformNames) -> None:
    with pytest.raises(ViewError):
        views.compare_models(names, "v0001", "v0001")


def test_the_newest_drops_come_from_the_month_index_across_months(
    platform: Platform,  # noqa: F811
) -> None:
    from datetime import UTC, datetime

    from tuneloop.data_cli.inspect import list_drops

    table = aws.table(platform.drops_table)
    started = {
        "a" * 64: "2026-10-30T09:00:00+00:00",
        "b" * 64: "2026-11-02T09:00:00+00:00",
        "c" * 64: "2026-12-01T09:00:00+00:00",
        "d" * 64: "2026-12-02T09:00:00+00:00",
    }
    for drop_id, at in started.items():
        table.put_item(
            Item={"drop_id": drop_id, "dataset": "faq" if drop_id[0] == "b" else "support",
                  "status": "complete", "started_at": at, "started_month": at[:7]}
        )  # fmt: skip
    table.put_item(Item={"drop_id": "d" * 64 + "#0", "segment_of": "d" * 64})
    now = datetime(2026, 12, 3, tzinfo=UTC)

    newest = [i["drop_id"][0] for i in list_drops(platform.drops_table, limit=3, now=now)]
    assert newest == ["d", "c", "b"]
    every = [i["drop_id"][0] for i in list_drops(platform.drops_table, limit=10, now=now)]
    assert every == ["d", "c", "b", "a"]  # back across two month boundaries, no segment
    faq = list_drops(platform.drops_table, dataset="faq", limit=10, now=now)
    assert [i["drop_id"][0] for i in faq] == ["b"]
    assert list_drops(platform.drops_table, limit=10, months=1, now=now)[-1]["drop_id"][0] == "c"


def test_records_over_time_reads_the_day_counters_of_the_window(
    platform: Platform,  # noqa: F811
) -> None:
    from datetime import date

    from tuneloop.ingest.drops import day_counter_key

    control = aws.table(platform.control_table)
    for day, stored in (("2026-12-03", 40), ("2026-12-01", 7), ("2026-08-01", 99)):
        control.put_item(Item={"key": day_counter_key(day), "stored": stored, "received": 50})
    control.put_item(Item={"key": day_counter_key("2026-12-02"), "stored": 0, "received": 3})
    series = views.records_over_time(names_of(platform), days=30, today=date(2026, 12, 3))
    assert series == [("2026-12-01", 7), ("2026-12-03", 40)]  # in the window, stored > 0


def test_compare_pairs_unrelated_versions_item_by_item_with_a_bootstrap_ci(
    platform: Platform,  # noqa: F811
) -> None:
    import io
    import json
    import random
    import tarfile

    from tuneloop.gating.stats import paired_bootstrap_ci

    # Two versions scored on the same benchmark version, neither the other's champion: the
    # per-item results of their evaluation reports are paired on the items both answered.
    scores_a = {f"q{n}": float(n % 2) for n in range(40)}
    scores_b = {f"q{n}": float(n % 3 != 0) for n in range(5, 45)}
    for version, scores in (("v0010", scores_a), ("v0011", scores_b)):
        report = {
            "results": {
                "candidate": {
                    "faq": {"acc": 0.5, "items": [{"id": i, "score": s} for i, s in scores.items()]}
                }
            }
        }
        body = json.dumps(report).encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            info = tarfile.TarInfo("evaluation.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        aws.s3().put_object(
            Bucket=platform.artifacts_bucket,
            Key=f"jobs/{version}-eval/output/output.tar.gz",
            Body=archive.getvalue(),
        )
        put_version(
            platform.model_versions_table,
            version,
            status="registered",
            model_data_url=f"s3://{platform.artifacts_bucket}/jobs/{version}-train/output/model.tar.gz",
            eval_job=f"{version}-eval",
            scores={"faq": {**score("0.5", version="7"), "metric": "acc"}},
        )

    (row,) = views.compare_models(names_of(platform), "v0010", "v0011").scores

    common = sorted(set(scores_a) & set(scores_b))
    diffs = [scores_b[i] - scores_a[i] for i in common]
    assert row.paired and row.n_paired == len(common) == 35
    assert row.diff == pytest.approx(sum(diffs) / len(diffs))
    expected = paired_bootstrap_ci(diffs, 2000, 0.95, random.Random("v0010:v0011:faq"))
    assert (row.ci_low, row.ci_high) == pytest.approx(expected)
    assert row.ci_low is not None and row.ci_high is not None and row.diff is not None
    assert row.ci_low < row.diff < row.ci_high
