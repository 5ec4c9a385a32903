"""The local platform's blue/green traffic shifting: the plan SageMaker's DeploymentConfig
asks for, requests routed by weight, steps that advance, and an alarm that rolls back."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tuneloop.local.traffic_split import NEW, OLD, Rollout, RolloutPlan, TrafficSplit


def canary_config(**routing: Any) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 30,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                **routing,
            },
            "TerminationWaitInSeconds": 60,
            "MaximumExecutionTimeoutInSeconds": 600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
    }


# --- the plan --------------------------------------------------------------------------


def test_a_canary_config_is_one_step_then_all() -> None:
    plan = RolloutPlan.from_deployment_config(canary_config())
    assert plan == RolloutPlan(
        "CANARY",
        (25, 100),
        wait_interval_seconds=30,
        baking_seconds=60,
        alarm_names=frozenset({"errors"}),
        timeout_seconds=600,
    )


def test_a_linear_step_in_instances_is_its_share_of_the_fleet() -> None:
    config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 5,
                "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            },
        }
    }
    plan = RolloutPlan.from_deployment_config(config, instance_count=3)
    assert plan.shares == (33, 66, 99, 100)
    assert plan.baking_seconds == 0 and plan.alarm_names == frozenset()


def test_no_deployment_config_shifts_all_at_once_unwatched() -> None:
    # What the Rollback function's UpdateEndpoint (no DeploymentConfig) gets from SageMaker
    assert RolloutPlan.from_deployment_config(None) == RolloutPlan("ALL_AT_ONCE", (100,))


# --- routing ---------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0, 1, 10, 25, 33, 50, 75, 100])
def test_requests_follow_the_share_within_one_request(share: int) -> None:
    # Given a split at this share
    split = TrafficSplit("blue", "green", share)
    # When requests arrive, Then after every request the new fleet's count is the share of
    # the total, off by less than one request
    new = 0
    for total in range(1, 401):
        new += split.pick() == "green"
        assert abs(new - total * share / 100) < 1, (share, total, new)
    assert split.requests(NEW) == new and split.requests(OLD) == 400 - new


def test_each_step_keeps_its_own_counts() -> None:
    split = TrafficSplit("blue", "green")
    for share in (0, 25, 100):
        split.shift(share)
        for _ in range(8):
            split.pick()
    assert split.shares == [0, 25, 100]
    assert [(s.requests[OLD], s.requests[NEW]) for s in split.steps] == [(8, 0), (6, 2), (0, 8)]


def test_a_share_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        TrafficSplit("blue", "green", 101)


# --- the rollout -----------------------------------------------------------------------


def fast(plan: RolloutPlan, **waits: float) -> RolloutPlan:
    return RolloutPlan(
        plan.routing,
        plan.shares,
        wait_interval_seconds=waits.get("wait", 0.01),
        baking_seconds=waits.get("baking", 0.01),
        alarm_names=plan.alarm_names,
        timeout_seconds=waits.get("timeout"),
    )


def test_the_steps_advance_to_all_traffic_on_the_new_fleet() -> None:
    linear = RolloutPlan("LINEAR", (25, 50, 75, 100), alarm_names=frozenset({"errors"}))
    split = TrafficSplit("blue", "green")
    outcome = Rollout(fast(linear), split).run()
    assert outcome.completed and split.outcome == "completed"
    assert split.shares == [0, 25, 50, 75, 100]


def _run_in_background(rollout: Rollout) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(rollout.run()), daemon=True)
    thread.start()
    return thread, result


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_an_alarm_during_the_canary_rolls_back_before_full_traffic() -> None:
    # Given a canary step that would be watched for a long time
    plan = fast(RolloutPlan.from_deployment_config(canary_config()), wait=60, baking=60)
    split = TrafficSplit("blue", "green")
    events: list[str] = []
    rollout = Rollout(
        plan,
        split,
        on_trip=lambda alarm: events.append(f"trip {alarm} at {split.share}%"),
        settle=lambda: events.append("settled"),
    )
    thread, result = _run_in_background(rollout)
    _wait_for(lambda: split.share == 25)
    picks = [split.pick() for _ in range(8)]
    assert picks.count("green") == 2
    # When another alarm, an OK transition, and then a rollback alarm arrive
    rollout.alarm_changed("someone-elses-alarm", "ALARM")
    rollout.alarm_changed("errors", "OK")
    assert split.share == 25
    rollout.alarm_changed("errors", "ALARM")
    # Then traffic is back on the old fleet at once (before the alarm's actions go out) ...
    assert events == ["trip errors at 0%"]
    assert [split.pick() for _ in range(4)] == ["blue"] * 4
    thread.join(timeout=10)
    assert not thread.is_alive(), "the trip ends the wait"
    # ... the rollout ends rolled back after settling, and the new fleet never got it all
    (outcome,) = result
    assert not outcome.completed and outcome.tripped_alarms == ("errors",)
    assert outcome.reason == (
        "Deployment rolled back: alarm(s) errors in ALARM during the canary step (25% of "
        "traffic on the new fleet); all traffic is back on the previous fleet"
    )
    assert events == ["trip errors at 0%", "settled"]
    assert split.shares == [0, 25, 0] and split.outcome == "rolled_back"
    assert split.requests(NEW) == 2


def test_an_alarm_while_baking_rolls_back_from_full_traffic() -> None:
    plan = fast(RolloutPlan.from_deployment_config(canary_config()), baking=60)
    split = TrafficSplit("blue", "green")
    rollout = Rollout(plan, split)
    thread, result = _run_in_background(rollout)
    _wait_for(lambda: split.share == 100)
    rollout.alarm_changed("errors", "ALARM")
    thread.join(timeout=10)
    (outcome,) = result
    assert not outcome.completed and "during the baking period" in outcome.reason
    assert split.shares == [0, 25, 100, 0]


def test_an_alarm_after_the_rollout_finished_changes_nothing() -> None:
    plan = fast(RolloutPlan.from_deployment_config(canary_config()))
    split = TrafficSplit("blue", "green")
    rollout = Rollout(plan, split, on_trip=lambda _: pytest.fail("no trip after the end"))
    assert rollout.run().completed
    rollout.alarm_changed("errors", "ALARM")
    assert split.share == 100


def test_an_update_that_outlasts_its_time_limit_rolls_back() -> None:
    # Given a start that already used most of the limit (a slow fleet start)
    plan = fast(RolloutPlan.from_deployment_config(canary_config()), wait=60, timeout=0.05)
    split = TrafficSplit("blue", "green")
    outcome = Rollout(plan, split, started=time.monotonic()).run()
    assert not outcome.completed and "MaximumExecutionTimeoutInSeconds" in outcome.reason
    assert split.shares == [0, 25, 0]
