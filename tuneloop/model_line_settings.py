"""The model lines of a deployment: several LoRA fine-tunes of one base, each with its own
datasets, gate policy and production version, served as adapter inference components on
one endpoint (docs/serving.md, "Model lines").

The stage config holds them (``StageConfig.model_lines``, validated at synth); every function
that acts for a line gets the same JSON in ``MODEL_LINES`` and reads it with
:meth:`ModelLines.from_json`. No lines (the default) is today's one model per endpoint.

A line's name is its inference component's name and the suffix of its runs' model versions
(``v0007-20261207-150000-support``), which SageMaker job names (63 characters, with suffixes
such as ``-evaluate``) bound to :data:`MAX_LINE_NAME_LENGTH` characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneloop.component_names import COMPONENT_NAME_RULE, is_component_name
from tuneloop.gating.policy import GatePolicy, PolicyError, parse_policy

BASE_COMPONENT = "base"
"""The name of the base inference component that the lines' adapter components share."""

MAX_LINE_NAME_LENGTH = 24
MAX_LINES = 16
"""A bound that catches a runaway list; SageMaker's own limit is the base's memory and
LMI's ``max_loras``, which the serving settings size."""

_KEYS = frozenset({"name", "datasets", "gate_policy"})


class ModelLineError(ValueError):
    """A model line's name or settings cannot be used; the message says what to change."""


@dataclass(frozen=True)
class ModelLineSettings:
    """One line: its name, the datasets that train it, and its gate policy (None: the
    stage's ``gate_policy``; its custom suites are the line's benchmarks)."""

    name: str
    datasets: tuple[str, ...]
    gate_policy: GatePolicy | None = None

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for each bad value; empty when the line can be used."""
        found: list[tuple[str, str]] = []
        if not is_component_name(self.name) or len(self.name) > MAX_LINE_NAME_LENGTH:
            found.append(
                (
                    "name",
                    f"must be {COMPONENT_NAME_RULE}, at most {MAX_LINE_NAME_LENGTH} characters "
                    f"(it names the line's inference component and ends its model versions), "
                    f"got {self.name!r}",
                )
            )
        elif self.name == BASE_COMPONENT:
            found.append(("name", f"{BASE_COMPONENT!r} is the base component's name"))
        if not self.datasets:
            found.append(("datasets", "must name at least one dataset (a drop's dataset)"))
        for dataset in self.datasets:
            if not isinstance(dataset, str) or not dataset:
                found.append(("datasets", f"must be non-empty names, got {dataset!r}"))
        if len(set(self.datasets)) != len(self.datasets):
            found.append(("datasets", f"lists a dataset twice: {list(self.datasets)}"))
        return found

    def policy(self, stage_policy: str | Mapping[str, Any]) -> GatePolicy:
        """The line's gate policy, else the stage's (``GATE_POLICY``)."""
        return self.gate_policy if self.gate_policy is not None else parse_policy(stage_policy)

    def trains_on(self, dataset: str) -> bool:
        return dataset in self.datasets

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"name": self.name, "datasets": list(self.datasets)}
        if self.gate_policy is not None:
            found["gate_policy"] = self.gate_policy.to_dict()
        return found

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "model_lines") -> ModelLineSettings:
        if not isinstance(raw, Mapping):
            raise ModelLineError(f"{where}: must be an object with name and datasets, got {raw!r}")
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise ModelLineError(f"{where}: unknown keys {unknown}; a line takes {sorted(_KEYS)}")
        datasets = raw.get("datasets", ())
        if isinstance(datasets, str) or not isinstance(datasets, Iterable):
            raise ModelLineError(f"{where}.datasets: must be a list of names, got {datasets!r}")
        policy = raw.get("gate_policy")
        try:
            parsed = None if policy is None else parse_policy(policy, source=f"{where}.gate_policy")
        except PolicyError as exc:
            raise ModelLineError(str(exc)) from None
        line = cls(name=raw.get("name", ""), datasets=tuple(datasets), gate_policy=parsed)
        problems = line.problems()
        if problems:
            raise ModelLineError("; ".join(f"{where}.{name}: {text}" for name, text in problems))
        return line


@dataclass(frozen=True)
class ModelLines:
    """The deployment's lines, in the order the stage lists them."""

    lines: tuple[ModelLineSettings, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ModelLineError("; ".join(f"model_lines{name}: {text}" for name, text in problems))

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if len(self.lines) > MAX_LINES:
            found.append(("", f"at most {MAX_LINES} lines, got {len(self.lines)}"))
        seen: set[str] = set()
        for index, line in enumerate(self.lines):
            found += [(f"[{index}].{name}", text) for name, text in line.problems()]
            if line.name in seen:
                found.append((f"[{index}].name", f"{line.name!r} names two lines"))
            seen.add(line.name)
        return found

    def __bool__(self) -> bool:
        return bool(self.lines)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(line.name for line in self.lines)

    def get(self, name: str) -> ModelLineSettings:
        for line in self.lines:
            if line.name == name:
                return line
        known = ", ".join(self.names) or "none: this deployment has no model lines"
        raise ModelLineError(f"no model line {name!r} (lines: {known})")

    def lines_of_dataset(self, dataset: str) -> tuple[str, ...]:
        """The lines a record of ``dataset`` trains (none: it is stored and trains no line)."""
        return tuple(line.name for line in self.lines if line.trains_on(dataset))

    def to_json(self) -> str:
        return json.dumps([line.to_dict() for line in self.lines], sort_keys=True)

    @classmethod
    def parse(cls, raw: Any) -> ModelLines:
        """From a list of line objects or its JSON text (the stage config, ``MODEL_LINES``)."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else []
            except json.JSONDecodeError as exc:
                raise ModelLineError(f"model_lines: not valid JSON ({exc})") from None
        if isinstance(raw, ModelLines):
            return raw
        if not isinstance(raw, list | tuple):
            raise ModelLineError(f"model_lines: must be a list of lines, got {raw!r}")
        return cls(
            tuple(
                item
                if isinstance(item, ModelLineSettings)
                else ModelLineSettings.from_dict(item, where=f"model_lines[{index}]")
                for index, item in enumerate(raw)
            )
        )

    @classmethod
    def from_json(cls, text: str) -> ModelLines:
        return cls.parse(text)


def line_version_suffix(model_line: str) -> str:
    """What a line's run appends to its model version (``""`` without a line)."""
    return f"-{model_line}" if model_line else ""
