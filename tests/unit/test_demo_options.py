"""`tuneloop demo` options: a given assembly, and enforcement on unless switched off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tuneloop import cli
from tuneloop.local import demo
from tuneloop.local.emulator import ENFORCE_VARIABLE, enforcement_default


def _run(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_run_demo(work_dir: Path, **options: Any) -> int:
        seen.update(options, work_dir=work_dir)
        return 0

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert cli.main(["demo", *argv]) == 0
    return seen


def test_demo_deploys_a_given_assembly_with_enforcement_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given an assembly folder, When the demo is asked to deploy it
    seen = _run(monkeypatch, ["--assembly", str(tmp_path), "--work-dir", str(tmp_path / "w")])
    # Then that assembly is deployed, and enforcement is left to its default (on)
    assert seen["assembly"] == tmp_path.resolve()
    assert seen["enforce_permissions"] is None


def test_no_enforce_turns_enforcement_off(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _run(monkeypatch, ["--no-enforce"])
    assert seen["enforce_permissions"] is False
    assert seen["assembly"] is None


@pytest.mark.parametrize(
    ("value", "expected"), [(None, True), ("1", True), ("0", False), ("off", False)]
)
def test_enforcement_is_on_unless_the_variable_says_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv(ENFORCE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(ENFORCE_VARIABLE, value)
    assert enforcement_default() is expected
