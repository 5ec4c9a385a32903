"""Emulates Application Auto Scaling's target tracking of SageMaker endpoint variants.

Gap: moto stores scalable targets and scaling policies but never scales. This emulator,
every ``interval_seconds``, reads each SageMaker variant target and its target-tracking
policy (``SageMakerVariantInvocationsPerInstance``), computes the metric from the variant's
``AWS/SageMaker`` ``Invocations`` (which the local endpoint publishes per request) over the
last ``window_seconds`` (a minute, as the predefined metric is per minute), and sets the
capacity target tracking would: ``ceil(current * invocations per instance / target)``
within min..max (:func:`tuneloop.release.autoscaling.desired_instances`). Scale-out waits
``ScaleOutCooldown`` after the last scale-out, scale-in ``ScaleInCooldown`` after the last
scaling activity; nothing happens while the direction is suspended or the endpoint is not
InService (SageMaker blocks scaling during an update).

The decision is recorded, not served: the endpoint's variant gets the new
``CurrentInstanceCount``/``DesiredInstanceCount`` in DescribeEndpoint, and ``activities``
lists each change; no further serving process starts (docs/local-platform.md).
``SageMakerVariantConcurrentRequestsPerModelHighResolution`` is read from the same
invocations (requests per second over the window, a stand-in for concurrency).

Reading metrics and targets is the services' own work (no account policy governs it).
"""

from __future__ import annotations

import datetime
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from tuneloop.release.autoscaling import (
    PREDEFINED_METRICS,
    SCALABLE_DIMENSION,
    SERVICE_NAMESPACE,
    AutoscalingSettings,
    desired_instances,
)

_METRICS = {predefined: name for name, predefined in PREDEFINED_METRICS.items()}


@dataclass(frozen=True)
class ScalingActivity:
    """One capacity change the emulator made (what Application Auto Scaling would)."""

    endpoint_name: str
    variant_name: str
    from_instances: int
    to_instances: int
    metric_per_instance: float
    at: float  # time.time()

    @property
    def direction(self) -> str:
        return "out" if self.to_instances > self.from_instances else "in"


class ScalingEmulator:
    def __init__(self, interval_seconds: float = 1.0, window_seconds: float = 60.0) -> None:
        self.interval_seconds = interval_seconds
        self.window_seconds = window_seconds
        self.activities: list[ScalingActivity] = []
        self._last: dict[tuple[str, str], tuple[str, float]] = {}  # target → (direction, at)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="autoscaling", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.evaluate_once()
            except Exception as exc:  # keep scaling; report, as a service would log it
                print(f"[local] autoscaling evaluation failed: {exc!r}", flush=True)

    def instance_counts(self, endpoint_name: str) -> list[int]:
        """The capacities the endpoint's variant went through, from its first."""
        changes = [a for a in self.activities if a.endpoint_name == endpoint_name]
        return [changes[0].from_instances, *(a.to_instances for a in changes)] if changes else []

    def evaluate_once(self, now: float | None = None) -> list[ScalingActivity]:
        from moto.applicationautoscaling.models import applicationautoscaling_backends
        from moto.sagemaker.models import sagemaker_backends

        now = time.time() if now is None else now
        made: list[ScalingActivity] = []
        with self._lock:
            for account, regions in list(applicationautoscaling_backends.items()):
                for region, backend in list(regions.items()):
                    targets = dict(backend.targets.get(SCALABLE_DIMENSION, {}))
                    for target in targets.values():
                        if target.service_namespace != SERVICE_NAMESPACE:
                            continue
                        sagemaker = sagemaker_backends[account][region]
                        activity = self._track(backend, sagemaker, target, now)
                        if activity is not None:
                            made.append(activity)
        self.activities.extend(made)
        return made

    def _track(self, backend: Any, sagemaker: Any, target: Any, now: float) -> Any:
        parts = str(target.resource_id).split("/")  # endpoint/<name>/variant/<variant>
        if len(parts) != 4:
            return None
        endpoint_name, variant_name = parts[1], parts[3]
        endpoint = sagemaker.endpoints.get(endpoint_name)
        if endpoint is None or endpoint.endpoint_status != "InService":
            return None
        policy = _target_tracking_policy(backend, target.resource_id)
        if policy is None:
            return None
        variant = next(
            (v for v in endpoint.production_variants if v.get("VariantName") == variant_name),
            None,
        )
        if variant is None:
            return None
        configuration = policy.target_tracking_scaling_policy_configuration
        metric = _METRICS.get(
            (configuration.get("PredefinedMetricSpecification") or {}).get(
                "PredefinedMetricType", ""
            )
        )
        if metric is None:
            return None
        settings = AutoscalingSettings(
            enabled=True,
            min_instances=int(target.min_capacity),
            max_instances=int(target.max_capacity),
            metric=metric,
            target_value=float(configuration["TargetValue"]),
            scale_in_cooldown_seconds=int(configuration.get("ScaleInCooldown") or 0),
            scale_out_cooldown_seconds=int(configuration.get("ScaleOutCooldown") or 0),
        )
        current = int(variant.get("CurrentInstanceCount") or 1)
        invocations = _invocations(endpoint_name, variant_name, self.window_seconds, now)
        if metric == "invocations_per_instance":
            # The predefined metric is per minute: the window's count scaled to a minute.
            per_instance = invocations * 60.0 / self.window_seconds / current
        else:
            per_instance = invocations / self.window_seconds / current
        desired = desired_instances(current, per_instance, settings)
        if desired == current:
            return None
        suspended = target.suspended_state or {}
        key = (endpoint_name, variant_name)
        last = self._last.get(key)
        if desired > current:
            if suspended.get("DynamicScalingOutSuspended"):
                return None
            if last and last[0] == "out" and now - last[1] < settings.scale_out_cooldown_seconds:
                return None
        else:
            if suspended.get("DynamicScalingInSuspended") or configuration.get("DisableScaleIn"):
                return None
            if last and now - last[1] < settings.scale_in_cooldown_seconds:
                return None
        variant["CurrentInstanceCount"] = desired
        variant["DesiredInstanceCount"] = desired
        self._last[key] = ("out" if desired > current else "in", now)
        return ScalingActivity(endpoint_name, variant_name, current, desired, per_instance, now)


def _target_tracking_policy(backend: Any, resource_id: str) -> Any:
    for policy in backend.policies.values():
        if (
            policy.resource_id == resource_id
            and policy.scalable_dimension == SCALABLE_DIMENSION
            and policy.policy_type == "TargetTrackingScaling"
        ):
            return policy
    return None


def _invocations(endpoint_name: str, variant_name: str, window: float, now: float) -> float:
    """The variant's ``Invocations`` in the last ``window`` seconds, from moto's store."""
    from moto.cloudwatch.models import cloudwatch_backends

    start = datetime.datetime.fromtimestamp(now - window, datetime.UTC)
    total = 0.0
    for regions in list(cloudwatch_backends.values()):
        for backend in list(regions.values()):
            for datum in list(backend.metric_data):
                if datum.namespace != "AWS/SageMaker" or datum.name != "Invocations":
                    continue
                dimensions = {d.name: d.value for d in datum.dimensions}
                if dimensions.get("EndpointName") != endpoint_name:
                    continue
                if dimensions.get("VariantName", variant_name) != variant_name:
                    continue
                value = getattr(datum, "value", None)  # aggregated data have no one value
                stamp = datum.timestamp
                if isinstance(stamp, str):
                    stamp = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=datetime.UTC)
                if value is not None and stamp >= start:
                    total += float(value)
    return total if math.isfinite(total) else 0.0
