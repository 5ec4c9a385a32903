"""What each model line serves: the read model behind `tuneloop status` and the console's
overview when the stage has model lines (docs/serving.md, "Model lines").

A line's production is its Control item ``production#<line>`` (the release path writes it);
its adapter inference component, named after the line, says whether the endpoint serves it
(``DescribeInferenceComponent``; ``component`` is None while the line has none yet).

    line_productions(names)           one LineProductionView per line, in the stage's order
    production_by_line(names)         line -> version in production ("" for none)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneloop.operations.names import PlatformNames
from tuneloop.operations.views_common import plain, to_dict
from tuneloop.release.control import production_key, read_production
from tuneloop.release.model_lines import describe_component, serving_artifact


@dataclass(frozen=True)
class ComponentView:
    """A line's adapter inference component as SageMaker describes it."""

    name: str
    status: str
    artifact_url: str = ""
    failure_reason: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class LineProductionView:
    model_line: str
    datasets: tuple[str, ...] = ()
    version: str = ""  # "" while nothing of the line is in production
    since: str = ""
    last_known_good: str = ""
    last_rollback: dict[str, Any] = field(default_factory=dict)
    component: ComponentView | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


def line_production(names: PlatformNames, model_line: str) -> LineProductionView:
    """One line's production item and its component."""
    datasets = names.lines().get(model_line).datasets
    production = read_production(names.control_table, production_key(model_line))
    component = component_view(model_line)
    if production is None:
        return LineProductionView(model_line, datasets, component=component)
    lkg = production.last_known_good
    return LineProductionView(
        model_line=model_line,
        datasets=datasets,
        version=production.current.model_version,
        since=str(production.item.get("updated_at", "")),
        last_known_good=lkg.model_version if lkg else "",
        last_rollback=dict(plain(dict(production.item.get("last_rollback") or {}))),
        component=component,
    )


def line_productions(names: PlatformNames) -> list[LineProductionView]:
    """Every line of the stage, in the order the stage lists them ([] without lines)."""
    return [line_production(names, line) for line in names.lines().names]


def production_by_line(names: PlatformNames) -> dict[str, str]:
    """Each line's version in production ("" for none): one GetItem of Control per line."""
    found = {}
    for line in names.lines().names:
        production = read_production(names.control_table, production_key(line))
        found[line] = production.current.model_version if production else ""
    return found


def component_view(model_line: str) -> ComponentView | None:
    """The line's component (named after the line), None while it does not exist."""
    described = describe_component(model_line)
    if described is None:
        return None
    return ComponentView(
        name=model_line,
        status=str(described.get("InferenceComponentStatus", "")),
        artifact_url=serving_artifact(described),
        failure_reason=str(described.get("FailureReason", "")),
        updated_at=str(described.get("LastModifiedTime", "")),
    )
