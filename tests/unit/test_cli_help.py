"""Every command's --help prints (argparse formats help strings with %: a stray one breaks
the command's help, which no other test would run)."""

from __future__ import annotations

import argparse

import pytest

from tuneloop.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(build_parser())


def test_the_commands_are_found() -> None:
    assert ("plan",) in COMMANDS and len(COMMANDS) > 10


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "tuneloop")
def test_help_prints(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        build_parser().parse_args([*command, "--help"])
    assert ended.value.code == 0
    assert "usage: tuneloop" in capsys.readouterr().out
