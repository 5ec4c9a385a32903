"""Platforms started one after another in one process (test modules, the mutation run)."""

from __future__ import annotations

from pathlib import Path

import boto3

from tuneloop.local.emulator import Emulator


def test_the_operator_keeps_its_credentials_across_platforms(tmp_path: Path) -> None:
    # Given a first platform whose operator made a call (boto3's default session now holds
    # the operator's credentials)
    with Emulator(tmp_path / "first", alarm_interval_seconds=3600, enforce_permissions=True):
        boto3.client("sqs").list_queues()
    # When a second platform starts in the same process, Then the operator is still known
    with Emulator(tmp_path / "second", alarm_interval_seconds=3600, enforce_permissions=True):
        assert "QueueUrls" not in boto3.client("sqs").list_queues()
