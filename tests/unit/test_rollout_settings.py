"""The stage's rollout settings: every SageMaker API limit holds at synth (a value just inside
passes, just outside fails naming the setting and the limit), and Deploy's DeploymentConfig
is what each mode asks SageMaker for."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from stacks.config import ConfigError, load_stage_config
from tuneloop.release.deployment import deployment_config
from tuneloop.release.rollout import RolloutSettings, RolloutSettingsError

# Wide enough that only the value under test can be wrong.
ROOMY = {"instance_count": 10, "maximum_execution_timeout_seconds": 28800, "baking_seconds": 0}


def problems(**values: Any) -> list[tuple[str, str]]:
    return RolloutSettings(**{**ROOMY, **values}).problems()


# (setting, the other values, just inside, just outside, the limit the message names)
LIMITS = [
    (
        "wait_interval_seconds",
        {"mode": "canary"},
        0,
        -1,
        "an integer in 0..3600 (WaitIntervalInSeconds)",
    ),
    (
        "wait_interval_seconds",
        {"mode": "canary"},
        3600,
        3601,
        "an integer in 0..3600 (WaitIntervalInSeconds)",
    ),
    ("baking_seconds", {}, 0, -1, "an integer in 0..3600 (TerminationWaitInSeconds)"),
    ("baking_seconds", {}, 3600, 3601, "an integer in 0..3600 (TerminationWaitInSeconds)"),
    (
        "maximum_execution_timeout_seconds",
        {},
        600,
        599,
        "an integer in 600..28800 (MaximumExecutionTimeoutInSeconds)",
    ),
    (
        "maximum_execution_timeout_seconds",
        {},
        28800,
        28801,
        "an integer in 600..28800 (MaximumExecutionTimeoutInSeconds)",
    ),
    ("canary_size_percent", {"mode": "canary"}, 50, 51, "an integer in 1..50 (CanarySize)"),
    ("canary_size_percent", {"mode": "canary"}, 10, 0, "an integer in 1..50 (CanarySize)"),
    ("linear_step_percent", {"mode": "linear"}, 50, 51, "an integer in 10..50 (LinearStepSize)"),
    ("linear_step_percent", {"mode": "linear"}, 10, 9, "an integer in 10..50 (LinearStepSize)"),
    ("instance_count", {}, 1, 0, "an integer >= 1"),
]


@pytest.mark.parametrize(("name", "others", "inside", "outside", "limit"), LIMITS)
def test_each_api_limit_passes_just_inside_and_fails_just_outside(
    name: str, others: dict[str, Any], inside: int, outside: int, limit: str
) -> None:
    # Given settings that are fine apart from the value under test
    assert problems(**others, **{name: inside}) == []
    # When the value is one past the limit, Then the problem names the setting and the limit
    found = problems(**others, **{name: outside})
    assert found == [(name, f"must be {limit}, got {outside}")]


@pytest.mark.parametrize("value", [1.5, "60", True, None])
def test_a_value_that_is_not_an_integer_fails(value: Any) -> None:
    (found,) = problems(wait_interval_seconds=value)
    assert found[0] == "wait_interval_seconds" and f"got {value!r}" in found[1]


def test_an_unknown_mode_names_the_closest() -> None:
    (found,) = problems(mode="canry")
    assert found == (
        "mode",
        "must be one of all_at_once, canary, linear, got 'canry' (did you mean 'canary'?)",
    )


@pytest.mark.parametrize(
    ("mode", "setting", "inside", "outside", "needed"),
    [
        # (instances, percent): 50% of 2 is one instance; 49% of 2 is 0.98 of one
        ("canary", "canary_size_percent", (2, 50), (2, 49), 3),
        ("canary", "canary_size_percent", (10, 10), (9, 10), 10),
        ("linear", "linear_step_percent", (10, 10), (9, 10), 10),
    ],
)
def test_a_step_must_come_to_a_whole_instance(
    mode: str, setting: str, inside: tuple[int, int], outside: tuple[int, int], needed: int
) -> None:
    count, percent = inside
    assert problems(mode=mode, instance_count=count, **{setting: percent}) == []
    count, percent = outside
    (found,) = problems(mode=mode, instance_count=count, **{setting: percent})
    assert found[0] == setting
    assert f"at least one of the variant's {count} instance(s)" in found[1]
    assert f"raise instance_count to at least {needed}" in found[1]


def test_a_single_instance_cannot_be_split() -> None:
    # The default variant has one instance: a canary of it would be all of it.
    (found,) = RolloutSettings(mode="canary", canary_size_percent=50).problems()
    assert found[0] == "canary_size_percent" and "raise instance_count to at least 2" in found[1]
    # All at once needs no split, so the canary size is not held against it
    assert RolloutSettings(mode="all_at_once", canary_size_percent=50).problems() == []


@pytest.mark.parametrize(
    ("mode", "waits"),
    [("all_at_once", 0), ("canary", 1), ("linear", 4)],  # linear 20%: 5 steps, 4 waits
)
def test_the_time_limit_must_exceed_the_total_waiting_time(mode: str, waits: int) -> None:
    # Given waits of 600 s between steps and 600 s of baking
    timing = {"mode": mode, "wait_interval_seconds": 600, "baking_seconds": 600}
    total = 600 * waits + 600
    # When the limit is the total, Then it fails naming the total; one second more passes
    assert problems(**timing, maximum_execution_timeout_seconds=total) == [
        (
            "maximum_execution_timeout_seconds",
            f"must be larger than the total waiting time of the steps and the baking "
            f"({total} s), got {total}",
        )
    ]
    assert problems(**timing, maximum_execution_timeout_seconds=total + 1) == []


@pytest.mark.parametrize(
    ("values", "shares"),
    [
        ({"mode": "all_at_once"}, (100,)),
        ({"mode": "canary", "canary_size_percent": 25}, (25, 100)),
        ({"mode": "linear", "linear_step_percent": 25}, (25, 50, 75, 100)),
        ({"mode": "linear", "linear_step_percent": 30}, (30, 60, 90, 100)),
    ],
)
def test_the_steps_of_each_mode(values: dict[str, Any], shares: tuple[int, ...]) -> None:
    assert RolloutSettings(**values).new_fleet_shares() == shares


ALARMS = ("tuneloop-5xx", "tuneloop-latency")


def test_all_at_once_shifts_in_one_step_and_bakes() -> None:
    settings = RolloutSettings(baking_seconds=600, maximum_execution_timeout_seconds=3600)
    assert deployment_config(ALARMS, settings) == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 600,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": "tuneloop-5xx"}, {"AlarmName": "tuneloop-latency"}]
        },
    }
    # The default is the same (what every stage deployed before rollout settings existed)
    assert deployment_config(ALARMS) == deployment_config(ALARMS, RolloutSettings())


def test_canary_asks_for_its_size_in_percent_and_the_wait() -> None:
    settings = RolloutSettings(
        mode="canary", instance_count=4, canary_size_percent=25, wait_interval_seconds=120
    )
    policy = deployment_config(ALARMS, settings)["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 120,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    assert policy["TerminationWaitInSeconds"] == 600


def test_linear_asks_for_its_step_in_percent_and_the_wait() -> None:
    settings = RolloutSettings(
        mode="linear", instance_count=10, linear_step_percent=20, wait_interval_seconds=60
    )
    policy = deployment_config((), settings)
    assert policy == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 60,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20},
            },
            "TerminationWaitInSeconds": 600,
            "MaximumExecutionTimeoutInSeconds": 3600,
        }
    }  # no alarms: no AutoRollbackConfiguration (the API refuses an empty list)


def test_the_deploy_functions_json_reads_back_and_is_checked() -> None:
    settings = RolloutSettings(mode="canary", instance_count=2, canary_size_percent=50)
    assert RolloutSettings.from_json(settings.to_json()) == settings
    with pytest.raises(RolloutSettingsError, match=r"rollout\.canary_size_percent must come to"):
        RolloutSettings.from_json('{"mode": "canary", "canary_size_percent": 50}')
    with pytest.raises(RolloutSettingsError, match=r"rollout\.bake_seconds is not a setting"):
        RolloutSettings.from_json('{"bake_seconds": 10}')
    with pytest.raises(RolloutSettingsError, match="not JSON"):
        RolloutSettings.from_json("{")


# --- the stage config ------------------------------------------------------------------


def test_a_rollout_outside_the_limits_fails_the_stage_config() -> None:
    dev = load_stage_config("dev")
    with pytest.raises(ConfigError) as error:
        dataclasses.replace(dev, rollout=RolloutSettings(baking_seconds=3601))
    assert str(error.value) == (
        "stage 'dev': rollout.baking_seconds must be an integer in 0..3600 "
        "(TerminationWaitInSeconds), got 3601"
    )


def test_the_update_may_not_outlast_the_run() -> None:
    local = load_stage_config("local")  # a run may last an hour
    just_inside = RolloutSettings(baking_seconds=0, maximum_execution_timeout_seconds=3599)
    assert dataclasses.replace(local, rollout=just_inside).rollout == just_inside
    with pytest.raises(
        ConfigError,
        match=r"rollout.maximum_execution_timeout_seconds must be "
        r"below the run's execution_timeout_hours \(3600 s\), got 3600",
    ):
        dataclasses.replace(local, rollout=RolloutSettings(maximum_execution_timeout_seconds=3600))


def test_context_overrides_merge_onto_the_stages_rollout() -> None:
    # Given the operator's override of a few fields (as cdk synth -c rollout='...' gives it)
    config = load_stage_config(
        "local", {"rollout": '{"mode": "canary", "instance_count": 4, "canary_size_percent": 25}'}
    )
    # Then those change and the stage's own values stay
    assert config.rollout == dataclasses.replace(
        load_stage_config("local").rollout, mode="canary", instance_count=4, canary_size_percent=25
    )
    with pytest.raises(
        ConfigError,
        match=r"stage 'local': rollout\.canary_size_pct is not a "
        r"setting \(did you mean 'canary_size_percent'\?\)",
    ):
        load_stage_config("local", {"rollout": {"canary_size_pct": 5}})
    with pytest.raises(ConfigError, match=r"stage 'local': .*rollout\.linear_step_percent must be"):
        load_stage_config("local", {"rollout": {"mode": "linear", "linear_step_percent": 5}})


def test_every_stage_rolls_out_within_the_limits() -> None:
    for stage in ("dev", "prod", "local"):
        assert load_stage_config(stage).rollout.problems() == []
