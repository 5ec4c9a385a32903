"""Operations views over moto: list, detail and compare on seeded versions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    Platform,
    aws_credentials,
    platform,
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
    table = aws.table(platform.model_versions_table)
    table.put_item(
        Item={
            "model_version": "v0001",
            "status": "deployed",
            "created_at": "2026-01-01T00:00:00+00:00",
            "scores": {"mmlu": score("0.40", ci_low="0.35", ci_high="0.45")},
        }
    )
    table.put_item(
        Item={
            "model_version": "v0002",
            "status": "registered",
            "created_at": "2026-01-02T00:00:00+00:00",
            "parent_version": "v0001",
            "scores": {
                "mmlu": score(
                    "0.46", diff="0.06", diff_ci_low="0.01", diff_ci_high="0.11", n_items="100"
                ),
                "faq": score("0.9", version="2"),
            },
        }
    )
    table.put_item(
        Item={
            "model_version": "v0003",
            "status": "rejected",
            "created_at": "2026-01-03T00:00:00+00:00",
            "scores": {"mmlu": score("0.30", version="9")},
        }
    )
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
