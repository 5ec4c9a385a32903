"""`--stage` finds names from the stage's stack outputs for `tuneloop data` too."""

from __future__ import annotations

import pytest

from tuneloop.cli import main
from tuneloop.data_cli import commands
from tuneloop.operations.names import NamesError, PlatformNames


def test_data_drops_without_a_table_uses_the_stage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(commands.TABLE_ENV, raising=False)
    asked: list[str] = []

    def for_stage(stage: str) -> PlatformNames:
        asked.append(stage)
        raise NamesError(f"stage {stage!r} is not deployed")

    monkeypatch.setattr(PlatformNames, "for_stage", staticmethod(for_stage))
    assert main(["data", "drops", "--stage", "qa"]) != 0
    assert asked == ["qa"]
    assert "stage 'qa' is not deployed" in capsys.readouterr().err


def test_data_drops_without_table_or_stage_says_what_to_pass(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(commands.TABLE_ENV, raising=False)
    assert main(["data", "drops"]) != 0
    assert "--table" in capsys.readouterr().err


def test_operations_commands_take_stage_and_json() -> None:
    from tuneloop.cli import build_parser

    args = build_parser().parse_args(["models", "compare", "v1", "v2", "--stage", "qa", "--json"])
    assert (args.stage, args.json, args.a, args.b) == ("qa", True, "v1", "v2")


def test_benchmarks_list_without_table_uses_the_stage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuneloop.benchmarks import commands as benchmark_commands

    monkeypatch.delenv(benchmark_commands.TABLE_ENV, raising=False)
    monkeypatch.delenv(benchmark_commands.BUCKET_ENV, raising=False)
    asked: list[str] = []

    def for_stage(stage: str) -> PlatformNames:
        asked.append(stage)
        raise NamesError(f"stage {stage!r} is not deployed")

    monkeypatch.setattr(PlatformNames, "for_stage", staticmethod(for_stage))
    assert main(["benchmarks", "list", "--stage", "qa"]) != 0
    assert asked == ["qa"]
    assert "stage 'qa' is not deployed" in capsys.readouterr().err
