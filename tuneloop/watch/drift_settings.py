"""The stage's drift check settings (``StageConfig.drift_check``), validated at synth.

The DriftCheck function reads the same dataclass back from its ``DRIFT_CHECK_SETTINGS``
variable (:meth:`DriftCheckSettings.from_json`), so a bad value fails ``cdk synth`` and the
function can never run with settings synth would have refused (docs/monitoring.md, "Drift").
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from tuneloop.ingest.events import dataset_name_problem
from tuneloop.settings_keys import did_you_mean
from tuneloop.watch.evaluation import SCHEDULE_EXPRESSION

DEFAULT_SCHEDULE = "rate(1 day)"
MAX_WINDOW_HOURS = 24 * 14
"""Capture objects are listed one hour prefix at a time: two weeks is 336 listings."""
MAX_REFERENCE_SAMPLE = 50_000
"""The classifier fits a reference sample the size of the window (at most 5,000 prompts);
a larger reference only sharpens the univariate bins, and costs read time and memory."""


class DriftSettingsError(ValueError):
    """The drift check settings are malformed; the message names the field."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class DriftCheckSettings:
    """The scheduled drift check of the production endpoint's captured prompts."""

    enabled: bool = True
    """False keeps the function and the alarm but pauses the schedule."""
    schedule: str = DEFAULT_SCHEDULE
    """EventBridge Scheduler expression: ``rate(1 day)`` or ``cron(0 6 * * ? *)``."""
    window_hours: int = 24
    """The window ends at the schedule's time and reaches this many hours back."""
    min_prompts: int = 50
    """Below this many captured prompts the check reports "too few prompts" and raises no
    alarm (PSI and the classifier are noise on a handful of prompts)."""
    reference_sample: int = 5000
    """At most this many prompts of the production model's training data are read."""
    retrain_on_drift: bool = False
    """On drift, write the window's redacted exchanges as a data drop (ingestion and the
    retrain trigger take it from there)."""
    retrain_dataset: str = "captured"
    """The dataset of that drop: ``drops/<retrain_dataset>/drift/...`` in the raw bucket."""

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for name in ("enabled", "retrain_on_drift"):
            if not isinstance(getattr(self, name), bool):
                found.append((name, f"must be true or false, got {getattr(self, name)!r}"))
        if not isinstance(self.schedule, str) or not SCHEDULE_EXPRESSION.match(self.schedule):
            found.append(
                (
                    "schedule",
                    "must be an EventBridge Scheduler expression such as 'rate(1 day)' or "
                    f"'cron(0 6 * * ? *)', got {self.schedule!r}",
                )
            )
        hours = self.window_hours
        if not _is_int(hours) or not 1 <= hours <= MAX_WINDOW_HOURS:
            found.append(
                ("window_hours", f"must be a whole number in 1..{MAX_WINDOW_HOURS}, got {hours!r}")
            )
        if not _is_int(self.min_prompts) or self.min_prompts < 4:
            # The domain classifier needs 4 prompts a side; fewer cannot be judged at all.
            found.append(("min_prompts", f"must be a whole number >= 4, got {self.min_prompts!r}"))
        sample = self.reference_sample
        if not _is_int(sample) or not 4 <= sample <= MAX_REFERENCE_SAMPLE:
            found.append(
                (
                    "reference_sample",
                    f"must be a whole number in 4..{MAX_REFERENCE_SAMPLE}, got {sample!r}",
                )
            )
        if not isinstance(self.retrain_dataset, str):
            found.append(("retrain_dataset", f"must be a string, got {self.retrain_dataset!r}"))
        else:
            problem = dataset_name_problem(self.retrain_dataset)
            if problem:
                found.append(("retrain_dataset", problem))
        return found

    @property
    def drop_prefix(self) -> str:
        """Where ``retrain_on_drift`` writes in the raw bucket (the function's only grant
        there)."""
        return f"drops/{self.retrain_dataset}/drift/"

    def to_json(self) -> str:
        """The DriftCheck function's ``DRIFT_CHECK_SETTINGS``; :meth:`from_json` reads it."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def with_overrides(self, overrides: Any) -> DriftCheckSettings:
        """These settings with the fields in ``overrides`` (an object, or its JSON text:
        ``cdk deploy -c drift_check='{"retrain_on_drift": true}'``) replaced. An unknown
        field names the closest known one; the result is checked by :meth:`problems` with
        the rest of the stage config."""
        if isinstance(overrides, str):
            try:
                overrides = json.loads(overrides)
            except ValueError as exc:
                raise DriftSettingsError(f"drift_check: invalid JSON ({exc})") from None
        if not isinstance(overrides, dict):
            raise DriftSettingsError(f"drift_check must be an object, got {overrides!r}")
        known = [f.name for f in dataclasses.fields(self)]
        for key in overrides:
            if key not in known:
                raise DriftSettingsError(
                    f"drift_check: unknown setting {key!r}{did_you_mean(str(key), known)}; "
                    f"settings: {', '.join(known)}"
                )
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_json(cls, text: str) -> DriftCheckSettings:
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError("expected a JSON object")
            settings = cls(**raw)
        except (TypeError, ValueError) as exc:
            raise DriftSettingsError(f"drift check settings are malformed: {exc}") from exc
        problems = settings.problems()
        if problems:
            raise DriftSettingsError(
                "drift check settings are invalid: "
                + "; ".join(f"{name} {why}" for name, why in problems)
            )
        return settings
