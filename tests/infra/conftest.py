"""Synthesize the app once per stage for the whole session (jsii start-up is ~10 s)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Assembly:
    """A synthesized cloud assembly: its folder and every stack's template."""

    outdir: Path
    templates: dict[str, dict[str, Any]]

    def template(self, suffix: str) -> dict[str, Any]:
        """The template of the stack whose name ends with ``-<suffix>``."""
        (name,) = [n for n in self.templates if n.endswith(f"-{suffix}")]
        return self.templates[name]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Every resource of ``resource_type`` in all stacks, by ``<stack>/<logical id>``."""
        return {
            f"{stack}/{logical_id}": resource
            for stack, template in self.templates.items()
            for logical_id, resource in template.get("Resources", {}).items()
            if resource["Type"] == resource_type
        }

    def state_machine(self, construct: str = "Retrain") -> dict[str, Any]:
        """The state machine built by construct ``construct`` ("Retrain" or "Release")."""
        (machine,) = [
            resource
            for key, resource in self.resources("AWS::StepFunctions::StateMachine").items()
            if key.split("/")[1].startswith(f"{construct}StateMachine")
        ]
        return machine

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(json.loads((self.outdir / "manifest.json").read_text()))


def synthesize(stage: str, outdir: Path, **context: Any) -> Assembly:
    from app import build_app

    build_app(context={"stage": stage, **context}, outdir=str(outdir)).synth()
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in sorted(outdir.glob("*.template.json"))
    }
    return Assembly(outdir=outdir, templates=templates)


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assembly]:
    yield synthesize("dev", tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assembly]:
    yield synthesize("local", tmp_path_factory.mktemp("cdk-local"))


MODEL_LINES = [
    {"name": "support", "datasets": ["acme_support"]},
    {
        "name": "search",
        "datasets": ["wiki", "intranet"],
        "gate_policy": {"suites": {"acme_search": {"role": "target", "metric": "acc"}}},
    },
]
"""Two model lines; ``search`` has its own gate policy (docs/serving.md, "Model lines")."""


@pytest.fixture(scope="session")
def dev_lines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assembly]:
    """The dev stage with :data:`MODEL_LINES`, synthesized once for every test that uses it."""
    yield synthesize(
        "dev",
        tmp_path_factory.mktemp("cdk-dev-lines"),
        model_lines=MODEL_LINES,
        # A component endpoint scales no variant (StageConfig._component_endpoint_problems).
        autoscaling={"enabled": False},
        # Adapter components need SageMaker's LoRA adapter API: LMI's on AWS.
        serving_backend="lmi",
    )
