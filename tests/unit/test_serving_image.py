"""The serving container is self-contained and matches the image it runs on: the packages the
serving code needs are the inference image's own (requirements-serving.txt, checked against
the stage's image tag), and model.tar.gz carries nothing to pip-install at endpoint start."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stacks.config import STAGES, load_stage_config
from training_containers.train import SERVING_CODE

ROOT = Path(__file__).resolve().parents[2]
SERVING_REQUIREMENTS = ROOT / "training_containers" / "requirements-serving.txt"
# huggingface-pytorch-inference:<torch>-transformers<transformers>-<device>-...
_TAG = re.compile(r"^(?P<torch>\d+\.\d+\.\d+)-transformers(?P<transformers>\d+\.\d+\.\d+)-")


def serving_pins() -> dict[str, Requirement]:
    lines = SERVING_REQUIREMENTS.read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(r.name): r for r in requirements}


def pinned_version(requirement: Requirement) -> str:
    (spec,) = requirement.specifier
    assert spec.operator == "==", requirement
    return spec.version


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_serving_requirements_are_the_stage_image_s_versions(stage: str) -> None:
    # Given the inference image the stage serves with
    image = load_stage_config(stage).serving_image
    match = _TAG.match(image.tag)
    assert image.repository == "huggingface-pytorch-inference" and match, image
    pins = serving_pins()
    # Then the serving requirements pin the image's own torch and transformers
    assert pinned_version(pins["torch"]) == match["torch"]
    assert pinned_version(pins["transformers"]) == match["transformers"]
    # and name the image they describe
    assert f"{image.repository}:{image.tag}" in SERVING_REQUIREMENTS.read_text()


def _third_party_imports(entry: Path) -> set[str]:
    """Top-level packages outside the standard library and ``tuneloop`` that ``entry`` and
    the ``tuneloop`` modules it reaches import (function-level imports included)."""
    seen: set[Path] = set()
    found: set[str] = set()
    pending = [entry]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "tuneloop":
                    module = ROOT / Path(*name.split("."))
                    for candidate in (module.with_suffix(".py"), module / "__init__.py"):
                        if candidate.is_file():
                            pending.append(candidate)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return found


def test_the_serving_code_imports_only_what_the_image_has() -> None:
    # Given the code the inference container runs (inference.py and the tuneloop it imports)
    imported = _third_party_imports(ROOT / "training_containers" / "inference.py")
    # Then every package it imports is one the image ships (requirements-serving.txt)
    assert {canonicalize_name(name) for name in imported} <= set(serving_pins())
    assert {"torch", "transformers", "peft"} <= imported


def test_model_artifacts_carry_nothing_to_install_at_endpoint_start() -> None:
    # The inference toolkit pip-installs code/requirements.txt when the artifact has one.
    assert [path.name for path in SERVING_CODE] == ["inference.py"]
    assert all(path.is_file() for path in SERVING_CODE)
