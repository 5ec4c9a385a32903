"""The drift check's stage settings: checked at synth by the code the function reads them with;
and the function's event."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from stacks.config import ConfigError, load_stage_config
from tuneloop.watch.drift_service import (
    DriftCheckInputError,
    DriftCheckRequest,
    request_input,
)
from tuneloop.watch.drift_settings import DriftCheckSettings, DriftSettingsError


def test_the_defaults_are_a_daily_check_of_a_day_without_retraining() -> None:
    settings = load_stage_config("dev").drift_check

    assert (settings.enabled, settings.schedule, settings.window_hours) == (
        True,
        "rate(1 day)",
        24,
    )
    assert settings.retrain_on_drift is False
    assert settings.problems() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedule": "every day"}, "schedule must be an EventBridge Scheduler expression"),
        ({"schedule": "at(2026-01-01T00:00:00)"}, "schedule must be"),  # one-time: not a check
        ({"window_hours": 0}, "window_hours must be a whole number in 1..336, got 0"),
        ({"window_hours": 24.5}, "window_hours must be a whole number"),
        ({"min_prompts": 3}, "min_prompts must be a whole number >= 4, got 3"),
        ({"reference_sample": 10**6}, "reference_sample must be a whole number in 4..50000"),
        ({"retrain_on_drift": "yes"}, "retrain_on_drift must be true or false, got 'yes'"),
        ({"enabled": 1}, "enabled must be true or false"),
        ({"retrain_dataset": "a/b"}, "retrain_dataset dataset name 'a/b' is not allowed"),
    ],
)
def test_a_bad_setting_fails_the_stage_config_naming_it(
    change: dict[str, object], message: str
) -> None:
    # Given the dev stage with one bad drift check setting
    bad = dataclasses.replace(DriftCheckSettings(), **change)  # type: ignore[arg-type]
    # Then synth fails naming drift_check.<field>, and the function would refuse it too
    with pytest.raises(ConfigError, match=f"drift_check.{message}"):
        dataclasses.replace(load_stage_config("dev"), drift_check=bad)
    with pytest.raises(DriftSettingsError, match=message):
        DriftCheckSettings.from_json(bad.to_json())


def test_the_function_reads_back_what_synth_wrote() -> None:
    settings = DriftCheckSettings(schedule="cron(0 6 * * ? *)", retrain_on_drift=True)

    assert DriftCheckSettings.from_json(settings.to_json()) == settings
    assert settings.drop_prefix == "drops/captured/drift/"


def test_malformed_settings_text_is_named() -> None:
    with pytest.raises(DriftSettingsError, match="malformed"):
        DriftCheckSettings.from_json('{"window_hour": 3}')
    with pytest.raises(DriftSettingsError, match="malformed"):
        DriftCheckSettings.from_json("[]")


def test_the_event_carries_the_window_end_and_an_optional_length() -> None:
    when = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)

    scheduled = DriftCheckRequest.parse(
        {"trigger": "scheduled", "scheduled_time": "2026-12-03T06:00:00Z"}
    )
    manual = DriftCheckRequest.parse(request_input(hours=3, when=when))

    assert scheduled == DriftCheckRequest("scheduled", when, None)
    assert manual == DriftCheckRequest("manual", when, 3)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"trigger": "scheduled"}, "'scheduled_time' is missing"),
        ({"trigger": "cron", "scheduled_time": "2026-12-03T06:00:00Z"}, "trigger must be one of"),
        ({"scheduled_time": "yesterday"}, "not ISO-8601"),
        ({"scheduled_time": "2026-12-03T06:00:00Z", "window_hours": "3"}, "window_hours must"),
        ({"scheduled_time": "2026-12-03T06:00:00Z", "window_hours": 0}, "window_hours must"),
    ],
)
def test_a_malformed_event_is_named(event: dict[str, object], message: str) -> None:
    with pytest.raises(DriftCheckInputError, match=message):
        DriftCheckRequest.parse(event)


def test_context_overrides_merge_onto_the_stage_settings() -> None:
    # cdk deploy -c drift_check='{"retrain_on_drift": true}'
    config = load_stage_config("local", {"drift_check": '{"retrain_on_drift": true}'})

    assert config.drift_check.retrain_on_drift is True
    assert config.drift_check.min_prompts == load_stage_config("local").drift_check.min_prompts


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            '{"retrain_on_drfit": true}',
            "unknown setting 'retrain_on_drfit' \\(did you mean 'retrain_on_drift'\\?\\)",
        ),
        ("{not json", "invalid JSON"),
        ("[1]", "must be an object"),
        ({"window_hours": "3"}, "drift_check.window_hours must be a whole number"),
    ],
)
def test_a_bad_override_fails_naming_the_setting(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_stage_config("dev", {"drift_check": raw})
