"""Target-tracking autoscaling of the endpoint's production variant (Application Auto Scaling).

The stage's :class:`AutoscalingSettings` (``StageConfig.autoscaling``) are checked at synth by
:meth:`AutoscalingSettings.problems`, the same check :meth:`AutoscalingSettings.from_json`
applies to ``AUTOSCALING_SETTINGS`` in the Deploy, ConfirmDeployment and Rollback functions.

The endpoint is created at run time, so the scalable target is too (CloudFormation cannot
hold an ``AWS::ApplicationAutoScaling::ScalableTarget`` for an endpoint that does not exist
yet). Who does what (docs/serving.md, "Autoscaling"):

- ConfirmDeployment, once the endpoint is InService on a config (the new one, or the old one
  after SageMaker's auto-rollback): :func:`activate` registers the variant as a scalable
  target (min/max, dynamic scaling on) and puts the target-tracking policy. The first
  deployment registers it; every later one restores it.
- Deploy, before ``UpdateEndpoint``, and Rollback, before its ``UpdateEndpoint``:
  :func:`suspend` turns dynamic scale-in and scale-out off, so no scaling activity races the
  update. Rollback restores it (:func:`activate`) once the endpoint is InService again.

This is what SageMaker's guide recommends for endpoints that use autoscaling ("Update
endpoints that use auto scaling", https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html:
autoscaling is blocked while an update is in progress; re-activate it with
``RegisterScalableTarget`` and ``PutScalingPolicy`` after the endpoint is InService), with
Application Auto Scaling's ``SuspendedState`` instead of deregistering ("Suspend and resume
scaling for Application Auto Scaling",
https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-suspend-resume-scaling.html),
since Deploy never changes the variant's instance type or name (the cases that need the
target deregistered).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tuneloop import aws
from tuneloop.settings_keys import did_you_mean

SERVICE_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SERVICE_LINKED_ROLE_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"
"""``iam:AWSServiceName`` of the role Application Auto Scaling creates on first registration."""

# Application Auto Scaling's predefined metrics for SageMaker variants
# (PredefinedMetricSpecification, https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PredefinedMetricSpecification.html).
PREDEFINED_METRICS = {
    "invocations_per_instance": "SageMakerVariantInvocationsPerInstance",
    "concurrent_requests": "SageMakerVariantConcurrentRequestsPerModelHighResolution",
}
METRICS = tuple(PREDEFINED_METRICS)

# The APIs' limits. RegisterScalableTarget: MinCapacity/MaxCapacity integers >= 0, and a
# real-time endpoint variant keeps at least one instance (scale to zero is for inference
# components only); TargetTrackingScalingPolicyConfiguration: TargetValue a positive number
# (8.515920e-109 to 1.174271e+108), ScaleInCooldown/ScaleOutCooldown integer seconds >= 0.
# Ours: at most a day of cooldown and 100 instances (above that is a quota request, not a
# stage setting).
MIN_INSTANCES = 1
MAX_INSTANCES = 100
TARGET_VALUE = (8.515920e-109, 1.174271e108)
COOLDOWN_SECONDS = (0, 86_400)

Problem = tuple[str, str]


class AutoscalingSettingsError(ValueError):
    """The autoscaling settings are malformed or outside the API's limits."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class AutoscalingSettings:
    """The stage's target tracking of the endpoint variant's instance count."""

    enabled: bool = False
    """Register the variant with Application Auto Scaling (off: the variant keeps
    ``rollout.instance_count`` instances). The stages turn it on (stacks/config.py)."""
    min_instances: int = 1
    """``MinCapacity``: at or below ``rollout.instance_count``, which a deployment starts at."""
    max_instances: int = 2
    """``MaxCapacity``: at or above ``rollout.instance_count``."""
    metric: str = "invocations_per_instance"
    """``invocations_per_instance`` (``SageMakerVariantInvocationsPerInstance``, per minute)
    or ``concurrent_requests`` (``SageMakerVariantConcurrentRequestsPerModelHighResolution``)."""
    target_value: float = 60.0
    """The metric's value per instance that target tracking keeps the variant at."""
    scale_in_cooldown_seconds: int = 600
    """``ScaleInCooldown``: after a scale-in, the wait before the next one."""
    scale_out_cooldown_seconds: int = 120
    """``ScaleOutCooldown``: after a scale-out, the wait before the next one."""

    @property
    def predefined_metric(self) -> str:
        return PREDEFINED_METRICS[self.metric]

    @property
    def policy_name(self) -> str:
        """The scaling policy's name (no ``:``, ``/`` or ``|``)."""
        return f"TuneLoop-{self.predefined_metric}"

    def policy_configuration(self) -> dict[str, Any]:
        """``PutScalingPolicy``'s ``TargetTrackingScalingPolicyConfiguration``."""
        return {
            "TargetValue": float(self.target_value),
            "PredefinedMetricSpecification": {"PredefinedMetricType": self.predefined_metric},
            "ScaleInCooldown": self.scale_in_cooldown_seconds,
            "ScaleOutCooldown": self.scale_out_cooldown_seconds,
            "DisableScaleIn": False,
        }

    # -- validation ------------------------------------------------------------------
    def problems(self, instance_count: int | None = None) -> list[Problem]:
        """Every value outside the APIs' limits, as (setting, what is wrong); with
        ``instance_count`` (``rollout.instance_count``), also whether it lies in min..max."""
        found: list[Problem] = []
        if not isinstance(self.enabled, bool):
            found.append(("enabled", f"must be true or false, got {self.enabled!r}"))
        if self.metric not in METRICS:
            hint = did_you_mean(self.metric, METRICS) if isinstance(self.metric, str) else ""
            found.append(
                ("metric", f"must be one of {', '.join(METRICS)}, got {self.metric!r}{hint}")
            )
        for name in ("min_instances", "max_instances"):
            value = getattr(self, name)
            if not _is_int(value) or not MIN_INSTANCES <= value <= MAX_INSTANCES:
                found.append(
                    (name, f"must be an integer in {MIN_INSTANCES}..{MAX_INSTANCES}, got {value!r}")
                )
        low, high = TARGET_VALUE
        value = self.target_value
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            found.append(("target_value", f"must be a number > 0 (TargetValue), got {value!r}"))
        for name in ("scale_in_cooldown_seconds", "scale_out_cooldown_seconds"):
            value = getattr(self, name)
            low, high = COOLDOWN_SECONDS
            if not _is_int(value) or not low <= value <= high:
                found.append((name, f"must be an integer in {low}..{high}, got {value!r}"))
        if found:  # the derived checks below need valid values
            return found
        if self.min_instances > self.max_instances:
            found.append(
                (
                    "max_instances",
                    f"must be >= min_instances ({self.min_instances}), got {self.max_instances}",
                )
            )
        elif (
            instance_count is not None
            and self.enabled
            and not self.min_instances <= instance_count <= self.max_instances
        ):
            found.append(
                (
                    "min_instances" if instance_count < self.min_instances else "max_instances",
                    f"must leave rollout.instance_count ({instance_count}), where every "
                    f"deployment starts, within {self.min_instances}..{self.max_instances}",
                )
            )
        return found

    # -- AUTOSCALING_SETTINGS --------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AutoscalingSettings:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise AutoscalingSettingsError(f"autoscaling settings are not JSON: {exc}") from exc
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any) -> AutoscalingSettings:
        """Settings from an object; unknown keys and values outside the limits fail."""
        if not isinstance(raw, Mapping):
            raise AutoscalingSettingsError(f"autoscaling settings must be an object, got {raw!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise AutoscalingSettingsError(
                f"autoscaling.{unknown[0]} is not a setting{did_you_mean(unknown[0], names)}; "
                f"the settings are {', '.join(sorted(names))}"
            )
        settings = cls(**dict(raw))
        problems = settings.problems()
        if problems:
            raise AutoscalingSettingsError(
                "autoscaling settings are invalid: "
                + "; ".join(f"autoscaling.{name} {why}" for name, why in problems)
            )
        return settings

    def with_overrides(self, overrides: Any) -> AutoscalingSettings:
        """These settings with the fields of ``overrides`` (an object or its JSON text)."""
        if isinstance(overrides, str):
            try:
                overrides = json.loads(overrides)
            except ValueError as exc:
                raise AutoscalingSettingsError(f"autoscaling: not valid JSON ({exc})") from exc
        if not isinstance(overrides, Mapping):
            raise AutoscalingSettingsError(f"autoscaling must be an object, got {overrides!r}")
        return self.from_dict({**dataclasses.asdict(self), **overrides})


# -- the target-tracking decision -----------------------------------------------------
def desired_instances(
    current: int, metric_per_instance: float, settings: AutoscalingSettings
) -> int:
    """Target tracking's capacity for ``metric_per_instance`` (the metric's value per
    instance now): ``ceil(current * metric / target)``, within min..max."""
    wanted = math.ceil(current * metric_per_instance / float(settings.target_value) - 1e-9)
    return max(settings.min_instances, min(settings.max_instances, wanted))


# -- the Application Auto Scaling calls ------------------------------------------------
def resource_id(endpoint_name: str, variant_name: str = "AllTraffic") -> str:
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def _client() -> Any:
    return aws.client("application-autoscaling")


def scalable_target(endpoint_name: str) -> dict[str, Any] | None:
    """The variant's registered scalable target, or None."""
    targets = _client().describe_scalable_targets(
        ServiceNamespace=SERVICE_NAMESPACE,
        ResourceIds=[resource_id(endpoint_name)],
        ScalableDimension=SCALABLE_DIMENSION,
    )["ScalableTargets"]
    return dict(targets[0]) if targets else None


def _suspended_state(suspended: bool) -> dict[str, bool]:
    # All three flags each time: the state is the request's, not merged with the old one.
    return {
        "DynamicScalingInSuspended": suspended,
        "DynamicScalingOutSuspended": suspended,
        "ScheduledScalingSuspended": False,
    }


def suspend(endpoint_name: str, settings: AutoscalingSettings) -> bool:
    """Before an update: dynamic scaling off, if the variant is a scalable target.

    True if a target was suspended (False: autoscaling is off or nothing registered yet,
    as before the first deployment)."""
    if not settings.enabled or scalable_target(endpoint_name) is None:
        return False
    _client().register_scalable_target(
        ServiceNamespace=SERVICE_NAMESPACE,
        ResourceId=resource_id(endpoint_name),
        ScalableDimension=SCALABLE_DIMENSION,
        SuspendedState=_suspended_state(True),
    )
    return True


def activate(endpoint_name: str, settings: AutoscalingSettings) -> bool:
    """Once the endpoint is InService: register (or restore) the target with dynamic scaling
    on and put the target-tracking policy. False when autoscaling is off."""
    if not settings.enabled:
        return False
    client = _client()
    target = {
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": resource_id(endpoint_name),
        "ScalableDimension": SCALABLE_DIMENSION,
    }
    client.register_scalable_target(
        **target,
        MinCapacity=settings.min_instances,
        MaxCapacity=settings.max_instances,
        SuspendedState=_suspended_state(False),
    )
    client.put_scaling_policy(
        **target,
        PolicyName=settings.policy_name,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=settings.policy_configuration(),
    )
    return True


def activate_when_in_service(
    endpoint_name: str,
    settings: AutoscalingSettings,
    *,
    wait_seconds: float,
    describe: Callable[[str], dict[str, Any] | None],
    poll_seconds: float = 5.0,
) -> bool:
    """After an update this function started (Rollback): wait up to ``wait_seconds`` for the
    endpoint to be InService again, then :func:`activate`. False if it did not settle in
    time (scaling stays suspended until the next deployment's ConfirmDeployment)."""
    if not settings.enabled:
        return False
    deadline = time.monotonic() + max(0.0, wait_seconds)
    while True:
        endpoint = describe(endpoint_name)
        if endpoint is not None and endpoint.get("EndpointStatus") == "InService":
            return activate(endpoint_name, settings)
        if time.monotonic() + poll_seconds > deadline:
            return False
        time.sleep(poll_seconds)
