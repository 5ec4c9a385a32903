"""SageMaker's blue/green traffic shifting, emulated: requests split by weight between the old
and the new fleet, shifted step by step, rolled back when an alarm trips.

Gap: moto has no ``UpdateEndpoint`` and ignores ``DeploymentConfig``. On SageMaker an update
with ``BlueGreenUpdatePolicy`` brings up the new fleet, then shifts traffic to it — all at
once, a canary step and the rest, or linear steps — waiting ``WaitIntervalInSeconds`` after
each step but the last, then bakes for ``TerminationWaitInSeconds`` before retiring the old
fleet. If any alarm of ``AutoRollbackConfiguration`` goes to ALARM meanwhile, all traffic
returns to the old fleet and the new one is torn down.

* :class:`RolloutPlan` reads the ``DeploymentConfig`` as the API receives it.
* :class:`TrafficSplit` routes each request to one fleet. Routing is deterministic (smooth
  weighted round robin): after ``n`` requests at a share ``p`` the new fleet has received
  ``round(n * p / 100)`` of them, off by less than one; it records every step it was at and
  the requests each fleet got there.
* :class:`Rollout` walks the plan's steps, waits, and trips on an alarm. The local alarm
  evaluator calls :meth:`Rollout.alarm_changed` synchronously on a transition, before it
  delivers the alarm's actions, so the rollback has begun (traffic back on the old fleet,
  the endpoint ``RollingBack``) when the Rollback function reads the endpoint, as on AWS,
  where SageMaker's rollback takes far longer than the alarm's SNS delivery.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Fleet = TypeVar("Fleet")
OLD, NEW = "old", "new"


@dataclass(frozen=True)
class RolloutPlan:
    """What a ``DeploymentConfig`` asks for, as the new fleet's share after each step."""

    routing: str
    """``ALL_AT_ONCE``, ``CANARY`` or ``LINEAR``."""
    shares: tuple[int, ...]
    """The new fleet's share of traffic (percent) after each step; the last is 100."""
    wait_interval_seconds: float = 0.0
    baking_seconds: float = 0.0
    alarm_names: frozenset[str] = frozenset()
    timeout_seconds: float | None = None

    @classmethod
    def from_deployment_config(
        cls, config: Mapping[str, Any] | None, *, instance_count: int = 1
    ) -> RolloutPlan:
        """The plan of ``UpdateEndpoint``'s ``DeploymentConfig``; without one (or without a
        ``BlueGreenUpdatePolicy``) SageMaker shifts all at once with no baking."""
        config = config or {}
        alarms = frozenset(
            str(alarm["AlarmName"])
            for alarm in (config.get("AutoRollbackConfiguration") or {}).get("Alarms") or []
        )
        policy = config.get("BlueGreenUpdatePolicy")
        if not policy:
            return cls("ALL_AT_ONCE", (100,), alarm_names=alarms)
        routing = dict(policy.get("TrafficRoutingConfiguration") or {})
        kind = str(routing.get("Type", "ALL_AT_ONCE"))
        if kind == "CANARY":
            shares: tuple[int, ...] = (_percent(routing["CanarySize"], instance_count), 100)
        elif kind == "LINEAR":
            step = _percent(routing["LinearStepSize"], instance_count)
            shares = tuple(min(100, step * n) for n in range(1, math.ceil(100 / step) + 1))
        else:
            shares = (100,)
        timeout = policy.get("MaximumExecutionTimeoutInSeconds")
        return cls(
            kind,
            shares,
            wait_interval_seconds=float(routing.get("WaitIntervalInSeconds") or 0),
            baking_seconds=float(policy.get("TerminationWaitInSeconds") or 0),
            alarm_names=alarms,
            timeout_seconds=float(timeout) if timeout else None,
        )

    def phase(self, index: int) -> str:
        """How a failure reason names step ``index`` (the last step's wait is the baking)."""
        share = self.shares[index]
        if index == len(self.shares) - 1:
            return "baking period after all traffic shifted to the new fleet"
        if self.routing == "CANARY":
            return f"canary step ({share}% of traffic on the new fleet)"
        steps = len(self.shares)
        return f"linear step {index + 1} of {steps} ({share}% of traffic on the new fleet)"


def _percent(size: Mapping[str, Any], instance_count: int) -> int:
    """A ``CapacitySize`` as a share of the fleet (percent)."""
    value = int(size["Value"])
    if size.get("Type") == "INSTANCE_COUNT":
        return max(1, min(100, round(100 * value / max(1, instance_count))))
    return max(1, min(100, value))


@dataclass
class StepRecord:
    share: int
    """The new fleet's share (percent) while this step held."""
    requests: dict[str, int] = field(default_factory=lambda: {OLD: 0, NEW: 0})


class TrafficSplit(Generic[Fleet]):
    """Routes requests between ``old`` and ``new`` by the new fleet's share (percent)."""

    def __init__(self, old: Fleet, new: Fleet, share: int = 0) -> None:
        self.old = old
        self.new = new
        self._lock = threading.Lock()
        self._credit = {OLD: 0, NEW: 0}
        self.steps: list[StepRecord] = []
        self.outcome: str | None = None
        """``completed`` or ``rolled_back`` once the rollout ended."""
        self.reason = ""
        self.shift(share)

    @property
    def share(self) -> int:
        return self.steps[-1].share

    @property
    def shares(self) -> list[int]:
        """Every share the new fleet was at, in order (0 first, 0 again after a rollback)."""
        return [step.share for step in self.steps]

    def requests(self, fleet: str) -> int:
        """How many requests ``fleet`` (``old``/``new``) received during the rollout."""
        return sum(step.requests[fleet] for step in self.steps)

    def shift(self, share: int) -> None:
        if not 0 <= share <= 100:
            raise ValueError(f"a share is a percentage in 0..100, got {share}")
        with self._lock:
            if self.steps and self.steps[-1].share == share:
                return
            self.steps.append(StepRecord(share))
            self._credit = {OLD: 0, NEW: 0}

    def pick(self) -> Fleet:
        """The fleet the next request goes to (smooth weighted round robin)."""
        with self._lock:
            step = self.steps[-1]
            weights = {OLD: 100 - step.share, NEW: step.share}
            for name, weight in weights.items():
                self._credit[name] += weight
            # The fleet with the larger credit; a tie goes to the old fleet.
            chosen = NEW if self._credit[NEW] > self._credit[OLD] else OLD
            self._credit[chosen] -= 100
            step.requests[chosen] += 1
        return self.new if chosen == NEW else self.old


@dataclass(frozen=True)
class RolloutOutcome:
    completed: bool
    reason: str = ""
    tripped_alarms: tuple[str, ...] = ()


class Rollout:
    """Walks a :class:`RolloutPlan` over a :class:`TrafficSplit`.

    ``on_trip(alarm_name)`` runs where the trip is noticed (the alarm evaluator's thread),
    right after traffic is back on the old fleet; ``settle()`` runs before :meth:`run`
    returns a rollback (the local platform waits there until the alarm's actions were
    delivered). ``started`` is when the update began (``time.monotonic``), for the plan's
    time limit.
    """

    def __init__(
        self,
        plan: RolloutPlan,
        split: TrafficSplit[Any],
        *,
        on_trip: Callable[[str], None] | None = None,
        settle: Callable[[], object] | None = None,
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.split = split
        self._on_trip = on_trip
        self._settle = settle
        self._clock = clock
        self._started = clock() if started is None else started
        self._lock = threading.Lock()
        self._tripped = threading.Event()
        self._alarms: list[str] = []
        self._finished = False

    def alarm_changed(self, alarm_name: str, new_state: str) -> None:
        """An alarm changed state: one of the plan's in ALARM rolls the update back."""
        if new_state != "ALARM" or alarm_name not in self.plan.alarm_names:
            return
        with self._lock:
            if self._finished:
                return
            first = not self._tripped.is_set()
            self._alarms.append(alarm_name)
            self.split.shift(0)
            self._tripped.set()
        if first and self._on_trip is not None:
            self._on_trip(alarm_name)

    def run(self) -> RolloutOutcome:
        """Shift, wait and watch each step; the outcome says whether all traffic stays on
        the new fleet. The split holds the record either way."""
        deadline = None
        if self.plan.timeout_seconds is not None:
            deadline = self._started + self.plan.timeout_seconds
        for index, share in enumerate(self.plan.shares):
            with self._lock:
                if not self._tripped.is_set():
                    self.split.shift(share)
            last = index == len(self.plan.shares) - 1
            watched = self._watch(
                self.plan.baking_seconds if last else self.plan.wait_interval_seconds, deadline
            )
            if watched == "tripped":
                return self._rolled_back(self.plan.phase(index))
            if watched == "timed_out":
                return self._timed_out()
        with self._lock:
            if not self._tripped.is_set():
                self._finished = True
                self.split.outcome = "completed"
                return RolloutOutcome(True)
        return self._rolled_back(self.plan.phase(len(self.plan.shares) - 1))

    def _watch(self, seconds: float, deadline: float | None) -> str:
        """Wait ``seconds`` for a trip: ``tripped``, ``timed_out`` (the deadline came
        first) or ``ok``."""
        timed_out = False
        if deadline is not None and self._clock() + seconds > deadline:
            seconds, timed_out = max(0.0, deadline - self._clock()), True
        tripped = self._tripped.wait(seconds) if seconds > 0 else self._tripped.is_set()
        if tripped:
            return "tripped"
        return "timed_out" if timed_out else "ok"

    def _rolled_back(self, phase: str) -> RolloutOutcome:
        with self._lock:
            self._finished = True
            alarms = tuple(dict.fromkeys(self._alarms))
        if self._settle is not None:
            self._settle()
        reason = (
            f"Deployment rolled back: alarm(s) {', '.join(alarms)} in ALARM during the "
            f"{phase}; all traffic is back on the previous fleet"
        )
        self.split.outcome, self.split.reason = "rolled_back", reason
        return RolloutOutcome(False, reason, alarms)

    def _timed_out(self) -> RolloutOutcome:
        with self._lock:
            self._finished = True
            self.split.shift(0)
        reason = (
            "Deployment rolled back: it did not finish within MaximumExecutionTimeoutInSeconds "
            f"({self.plan.timeout_seconds:g} s); all traffic is back on the previous fleet"
        )
        self.split.outcome, self.split.reason = "rolled_back", reason
        return RolloutOutcome(False, reason)
