"""Read model of continuous evaluation: a version's scheduled scores by date, per suite.

The scheduled benchmark runs (``trigger: "scheduled"``) are entries of the version item's
``benchmark_runs``, each with its ``regression_check`` against the gate-time score
(:mod:`tuneloop.watch.evaluation`); one item read, no S3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneloop.benchmarks.runs import runs_of
from tuneloop.operations.names import PlatformNames
from tuneloop.operations.views_common import num, to_dict
from tuneloop.release.model_versions import get_version
from tuneloop.watch.evaluation import SCHEDULED


@dataclass(frozen=True)
class EvaluationPoint:
    suite: str
    at: str  # when Record ran (ISO-8601); ``date`` is its day
    metric: str
    value: float | None
    gate_value: float | None
    delta: float | None
    margin: float | None
    regression: bool
    crosses_versions: bool
    benchmark_version: str
    reason: str
    run_id: str

    @property
    def date(self) -> str:
        return self.at[:10]

    def to_dict(self) -> dict[str, Any]:
        return {**to_dict(self), "date": self.date}


def evaluation_points(item: Mapping[str, Any]) -> list[EvaluationPoint]:
    """A version item's scheduled scores, by suite then oldest first."""
    points = []
    for run in runs_of(dict(item)):
        if run.get("trigger") != SCHEDULED:
            continue
        check = run.get("regression_check")
        check = check if isinstance(check, Mapping) else {}
        points.append(
            EvaluationPoint(
                suite=str(run.get("suite", "")),
                at=str(run.get("at", "")),
                metric=str(check.get("metric") or run.get("metric", "")),
                value=num(check.get("value", run.get("value"))),
                gate_value=num(check.get("gate_value")),
                delta=num(check.get("delta")),
                margin=num(check.get("margin")),
                regression=bool(check.get("regression", False)),
                crosses_versions=bool(check.get("crosses_versions", False)),
                benchmark_version=str(run.get("version", "")),
                reason=str(check.get("reason", "")),
                run_id=str(run.get("run_id", "")),
            )
        )
    return sorted(points, key=lambda p: (p.suite, p.at))


def evaluation_history(names: PlatformNames, model_version: str) -> list[EvaluationPoint]:
    """``model_version``'s continuous evaluation (empty without a version or runs)."""
    if not model_version:
        return []
    item = get_version(names.model_versions_table, model_version)
    return evaluation_points(item) if item else []


def by_suite(points: list[EvaluationPoint]) -> dict[str, list[EvaluationPoint]]:
    grouped: dict[str, list[EvaluationPoint]] = {}
    for point in points:
        grouped.setdefault(point.suite, []).append(point)
    return grouped
