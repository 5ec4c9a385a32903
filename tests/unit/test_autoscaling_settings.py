"""The stage's autoscaling settings and the target-tracking decision."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import ConfigError, load_stage_config
from tuneloop.release.autoscaling import (
    AutoscalingSettings,
    AutoscalingSettingsError,
    desired_instances,
)

ON = {"enabled": True, "min_instances": 1, "max_instances": 4, "target_value": 10.0}


def settings(**values: Any) -> AutoscalingSettings:
    return AutoscalingSettings(**{**ON, **values})


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("metric", "invocations", "must be one of invocations_per_instance, concurrent_requests"),
        ("min_instances", 0, "must be an integer in 1..100"),
        ("max_instances", 101, "must be an integer in 1..100"),
        ("target_value", 0, "must be a number > 0"),
        ("target_value", True, "must be a number > 0"),
        ("scale_in_cooldown_seconds", -1, "must be an integer in 0..86400"),
        ("scale_out_cooldown_seconds", 1.5, "must be an integer in 0..86400"),
        ("enabled", "yes", "must be true or false"),
    ],
)
def test_values_outside_the_api_limits_are_named(setting: str, value: Any, expected: str) -> None:
    # Given one value outside the limits; When checked; Then that setting is named
    (found,) = settings(**{setting: value}).problems()
    assert found[0] == setting and expected in found[1]


def test_min_above_max_is_refused() -> None:
    assert settings(min_instances=3, max_instances=2).problems() == [
        ("max_instances", "must be >= min_instances (3), got 2")
    ]


def test_the_deployments_instance_count_must_lie_within_min_and_max() -> None:
    # Given a variant that every deployment starts at 4 instances, and one at 1
    # Then a range without it is refused, naming the bound to move; off, nothing is checked
    (above,) = settings(max_instances=2).problems(instance_count=4)
    assert above[0] == "max_instances" and "rollout.instance_count (4)" in above[1]
    (below,) = settings(min_instances=2).problems(instance_count=1)
    assert below[0] == "min_instances"
    assert settings(enabled=False, max_instances=2).problems(instance_count=4) == []


def test_the_stage_config_checks_autoscaling_against_its_rollout() -> None:
    # Given the local stage with a canary of 4 instances and autoscaling up to 2
    # When loaded Then cdk synth would fail naming both settings
    with pytest.raises(ConfigError, match=r"autoscaling\.max_instances .*rollout.instance_count"):
        load_stage_config(
            "local",
            {
                "rollout": json.dumps({"instance_count": 4}),
                "autoscaling": json.dumps({"max_instances": 2}),
            },
        )


@pytest.mark.parametrize("stage", ["dev", "prod", "local"])
def test_every_stage_autoscales_its_variant(stage: str) -> None:
    config = load_stage_config(stage)
    assert config.autoscaling.enabled
    assert config.autoscaling.min_instances <= config.rollout.instance_count
    assert config.autoscaling.max_instances >= config.rollout.instance_count


def test_a_context_override_merges_onto_the_stages_settings() -> None:
    config = load_stage_config("local", {"autoscaling": '{"scale_in_cooldown_seconds": 5}'})
    assert config.autoscaling == AutoscalingSettings(
        **{
            **json.loads(load_stage_config("local").autoscaling.to_json()),
            "scale_in_cooldown_seconds": 5,
        }
    )


def test_unknown_keys_fail_with_the_closest_setting() -> None:
    with pytest.raises(AutoscalingSettingsError, match="did you mean 'target_value'"):
        AutoscalingSettings.from_dict({"target_valeu": 3})


def test_the_json_round_trip_is_exact() -> None:
    original = settings(metric="concurrent_requests", scale_in_cooldown_seconds=30)
    assert AutoscalingSettings.from_json(original.to_json()) == original


def test_the_policy_is_target_tracking_on_the_predefined_metric() -> None:
    assert settings(metric="concurrent_requests").policy_configuration() == {
        "TargetValue": 10.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantConcurrentRequestsPerModelHighResolution"
        },
        "ScaleInCooldown": 600,
        "ScaleOutCooldown": 120,
        "DisableScaleIn": False,
    }
    assert ":" not in settings().policy_name and "/" not in settings().policy_name


@pytest.mark.parametrize(
    ("current", "per_instance", "expected"),
    [
        (1, 25.0, 3),  # ceil(1 * 25 / 10)
        (2, 10.0, 2),  # at the target: unchanged
        (2, 10.1, 3),  # just above: one more
        (3, 2.0, 1),  # ceil(3 * 2 / 10) = 1
        (1, 500.0, 4),  # capped at max
        (4, 0.0, 1),  # idle: down to min
    ],
)
def test_target_tracking_keeps_the_metric_at_the_target_within_min_and_max(
    current: int, per_instance: float, expected: int
) -> None:
    assert desired_instances(current, per_instance, settings()) == expected
