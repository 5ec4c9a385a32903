"""How a blue/green update shifts traffic: all at once, canary or linear (SageMaker's
deployment guardrails), with the wait between steps, the final baking time and the
deployment's time limit.

The stage's :class:`RolloutSettings` (``StageConfig.rollout``) are checked at synth by
:meth:`RolloutSettings.problems` against the limits of the SageMaker API, the same check
:meth:`RolloutSettings.from_json` applies to the Deploy function's ``ROLLOUT_SETTINGS``; Deploy
turns them into ``UpdateEndpoint``'s ``DeploymentConfig.BlueGreenUpdatePolicy``
(:func:`tuneloop.release.deployment.deployment_config`) and sizes the endpoint's variant with
``instance_count``. docs/serving.md, "Rollout", describes the modes.

Example (``cdk synth -c rollout='{"mode": "canary", "instance_count": 2,
"canary_size_percent": 50}'``): half of the fleet's capacity takes traffic for
``wait_interval_seconds`` while the rollback alarms watch; then all traffic shifts, the old
fleet is kept for ``baking_seconds`` and retired.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneloop.settings_keys import did_you_mean

MODES = ("all_at_once", "canary", "linear")
_ROUTING_TYPES = {"all_at_once": "ALL_AT_ONCE", "canary": "CANARY", "linear": "LINEAR"}

# The SageMaker API's limits.
# TrafficRoutingConfig (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TrafficRoutingConfig.html):
# WaitIntervalInSeconds 0..3600; CanarySize "must be less than or equal to 50% of the
# variant's total instance count"; LinearStepSize "must be 10-50% of the variant's total
# instance count".
WAIT_INTERVAL_SECONDS = (0, 3600)
CANARY_SIZE_PERCENT = (1, 50)  # the lower bound: CapacitySize.Value has a minimum of 1
LINEAR_STEP_PERCENT = (10, 50)
# CapacitySize (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CapacitySize.html):
# Type INSTANCE_COUNT | CAPACITY_PERCENT, Value >= 1. The settings are percentages.
CAPACITY_TYPE = "CAPACITY_PERCENT"
# BlueGreenUpdatePolicy (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_BlueGreenUpdatePolicy.html):
# TerminationWaitInSeconds 0..3600; MaximumExecutionTimeoutInSeconds 600..28800, "larger
# than the total waiting time specified in TerminationWaitInSeconds and WaitIntervalInSeconds".
TERMINATION_WAIT_SECONDS = (0, 3600)
MAXIMUM_EXECUTION_TIMEOUT_SECONDS = (600, 28800)

Problem = tuple[str, str]


class RolloutSettingsError(ValueError):
    """The rollout settings are malformed or outside the API's limits."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class RolloutSettings:
    """The stage's traffic shifting for blue/green endpoint updates."""

    mode: str = "all_at_once"
    """``all_at_once``, ``canary`` (one step of ``canary_size_percent``, then the rest) or
    ``linear`` (steps of ``linear_step_percent`` until all traffic is on the new fleet)."""
    instance_count: int = 1
    """The endpoint variant's ``InitialInstanceCount``. SageMaker shifts traffic by whole
    instances of the new fleet, so a canary or linear step must come to at least one."""
    canary_size_percent: int = 10
    """``CanarySize`` (CAPACITY_PERCENT) of the new fleet that takes traffic first (1-50)."""
    linear_step_percent: int = 20
    """``LinearStepSize`` (CAPACITY_PERCENT) each linear step adds (10-50)."""
    wait_interval_seconds: int = 300
    """``WaitIntervalInSeconds``: how long each canary or linear step is watched by the
    rollback alarms before the next shift (0-3600)."""
    baking_seconds: int = 600
    """``TerminationWaitInSeconds``: after all traffic is on the new fleet, the old fleet is
    kept this long while the alarms watch; an alarm rolls back (0-3600)."""
    maximum_execution_timeout_seconds: int = 3600
    """``MaximumExecutionTimeoutInSeconds``: the whole update's limit (600-28800), above
    the total waiting time of the steps and the baking."""

    # -- what SageMaker is asked for -------------------------------------------------
    def new_fleet_shares(self) -> tuple[int, ...]:
        """The new fleet's share of traffic (percent) after each step; the last is 100."""
        if self.mode == "canary":
            return (self.canary_size_percent, 100)
        if self.mode == "linear":
            step = self.linear_step_percent
            return tuple(min(100, step * n) for n in range(1, math.ceil(100 / step) + 1))
        return (100,)

    def total_wait_seconds(self) -> int:
        """The waits between steps plus the baking: what the time limit must exceed."""
        return self.wait_interval_seconds * (len(self.new_fleet_shares()) - 1) + (
            self.baking_seconds
        )

    def traffic_routing_configuration(self) -> dict[str, Any]:
        routing: dict[str, Any] = {"Type": _ROUTING_TYPES[self.mode]}
        if self.mode == "all_at_once":
            routing["WaitIntervalInSeconds"] = 0  # required; there is no step to wait after
            return routing
        routing["WaitIntervalInSeconds"] = self.wait_interval_seconds
        if self.mode == "canary":
            routing["CanarySize"] = {"Type": CAPACITY_TYPE, "Value": self.canary_size_percent}
        else:
            routing["LinearStepSize"] = {"Type": CAPACITY_TYPE, "Value": self.linear_step_percent}
        return routing

    def blue_green_update_policy(self) -> dict[str, Any]:
        return {
            "TrafficRoutingConfiguration": self.traffic_routing_configuration(),
            "TerminationWaitInSeconds": self.baking_seconds,
            "MaximumExecutionTimeoutInSeconds": self.maximum_execution_timeout_seconds,
        }

    # -- validation ------------------------------------------------------------------
    def problems(self) -> list[Problem]:
        """Every value outside the API's limits, as (setting, what is wrong)."""
        found: list[Problem] = []
        if self.mode not in MODES:
            hint = did_you_mean(self.mode, MODES) if isinstance(self.mode, str) else ""
            found.append(("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}{hint}"))
        if not _is_int(self.instance_count) or self.instance_count < 1:
            count = self.instance_count
            found.append(("instance_count", f"must be an integer >= 1, got {count!r}"))
        ranges = {
            "canary_size_percent": (CANARY_SIZE_PERCENT, "CanarySize"),
            "linear_step_percent": (LINEAR_STEP_PERCENT, "LinearStepSize"),
            "wait_interval_seconds": (WAIT_INTERVAL_SECONDS, "WaitIntervalInSeconds"),
            "baking_seconds": (TERMINATION_WAIT_SECONDS, "TerminationWaitInSeconds"),
            "maximum_execution_timeout_seconds": (
                MAXIMUM_EXECUTION_TIMEOUT_SECONDS,
                "MaximumExecutionTimeoutInSeconds",
            ),
        }
        for name, ((low, high), api_name) in ranges.items():
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= high:
                found.append(
                    (name, f"must be an integer in {low}..{high} ({api_name}), got {value!r}")
                )
        if found:  # the derived checks below need valid values
            return found
        step = {"canary": "canary_size_percent", "linear": "linear_step_percent"}.get(self.mode)
        if step is not None:
            percent = getattr(self, step)
            instances = percent * self.instance_count / 100
            if instances < 1:
                found.append(
                    (
                        step,
                        f"must come to at least one of the variant's {self.instance_count} "
                        f"instance(s) (traffic shifts by whole instances), got {percent}% = "
                        f"{instances:g}; raise instance_count to at least "
                        f"{math.ceil(100 / percent)}",
                    )
                )
        waiting = self.total_wait_seconds()
        if self.maximum_execution_timeout_seconds <= waiting:
            found.append(
                (
                    "maximum_execution_timeout_seconds",
                    f"must be larger than the total waiting time of the steps and the baking "
                    f"({waiting} s), got {self.maximum_execution_timeout_seconds}",
                )
            )
        return found

    # -- the Deploy function's ROLLOUT_SETTINGS --------------------------------------
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RolloutSettings:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise RolloutSettingsError(f"rollout settings are not JSON: {exc}") from exc
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any) -> RolloutSettings:
        """Settings from an object; unknown keys and values outside the limits fail."""
        if not isinstance(raw, Mapping):
            raise RolloutSettingsError(f"rollout settings must be an object, got {raw!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise RolloutSettingsError(
                f"rollout.{unknown[0]} is not a setting{did_you_mean(unknown[0], names)}; "
                f"the settings are {', '.join(sorted(names))}"
            )
        settings = cls(**dict(raw))
        problems = settings.problems()
        if problems:
            raise RolloutSettingsError(
                "rollout settings are invalid: "
                + "; ".join(f"rollout.{name} {why}" for name, why in problems)
            )
        return settings

    def with_overrides(self, overrides: Any) -> RolloutSettings:
        """These settings with the fields of ``overrides`` (an object or its JSON text)."""
        if isinstance(overrides, str):
            try:
                overrides = json.loads(overrides)
            except ValueError as exc:
                raise RolloutSettingsError(f"rollout: not valid JSON ({exc})") from exc
        if not isinstance(overrides, Mapping):
            raise RolloutSettingsError(f"rollout must be an object, got {overrides!r}")
        return self.from_dict({**dataclasses.asdict(self), **overrides})
