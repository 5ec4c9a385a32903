"""The stage's rollout settings reach the Deploy function as synthesized, a context override
(`cdk synth -c rollout=...`) reaches it too, and one outside the API's limits fails synth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks.config import ConfigError, load_stage_config
from tests.infra.conftest import Assembly, synthesize
from tests.infra.test_watch_quality import _deploy_environment
from tuneloop.release.rollout import RolloutSettings


def test_deploy_gets_the_stages_rollout(dev: Assembly) -> None:
    env = _deploy_environment(dev)
    assert RolloutSettings.from_json(env["ROLLOUT_SETTINGS"]) == load_stage_config("dev").rollout


def test_a_context_override_reaches_the_deploy_function(tmp_path: Path) -> None:
    # Given an operator's canary of one instance in four
    override = {"mode": "canary", "instance_count": 4, "canary_size_percent": 25}
    # When the app is synthesized with it
    assembly = synthesize("local", tmp_path / "cdk", rollout=json.dumps(override))
    # Then Deploy reads exactly that canary, the rest as the stage has it
    rollout = RolloutSettings.from_json(_deploy_environment(assembly)["ROLLOUT_SETTINGS"])
    assert rollout == load_stage_config("local").rollout.with_overrides(override)
    assert rollout.traffic_routing_configuration()["CanarySize"] == {
        "Type": "CAPACITY_PERCENT",
        "Value": 25,
    }


def test_a_rollout_outside_the_limits_fails_synth(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"rollout\.wait_interval_seconds must be an integer "
        r"in 0\.\.3600 \(WaitIntervalInSeconds\), got 7200",
    ):
        synthesize("local", tmp_path / "cdk", rollout='{"wait_interval_seconds": 7200}')
