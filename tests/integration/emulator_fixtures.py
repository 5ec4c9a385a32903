"""What the emulator-backed integration modules share: an emulator whose alarms the tests
evaluate themselves, with permissions off (they are covered by test_enforcement and
tests/e2e)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tuneloop.local.emulator import Emulator


def unenforced_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """For a module fixture: ``yield from unenforced_emulator(tmp_path_factory)``."""
    with Emulator(
        tmp_path_factory.mktemp("platform"), alarm_interval_seconds=3600, enforce_permissions=False
    ) as emulator:
        yield emulator
