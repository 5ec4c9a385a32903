"""Ingest settings from the stage config: JSON round trip and errors naming the field."""

from __future__ import annotations

import json

import pytest

from stacks.config import load_stage_config
from tuneloop.ingest.settings import (
    DEFAULT_SETTINGS,
    IngestSettings,
    IngestSettingsError,
    QualitySettings,
    settings_from_json,
    settings_to_json,
    settings_with,
)


def test_every_stage_round_trips_its_settings_through_the_environment_value() -> None:
    for stage in ("dev", "prod", "local"):
        settings = load_stage_config(stage).ingest
        assert settings_from_json(settings_to_json(settings)) == settings


def test_fields_left_out_keep_their_defaults() -> None:
    settings = settings_from_json(
        '{"quality": {"min_chars": 10}, "redactors": ["email"], "segment_bytes": 1048576}'
    )
    assert settings.quality == QualitySettings(min_chars=10)
    assert settings.redactors == ("email",)
    assert settings.segment_bytes == 1048576
    assert settings.near_duplicates == DEFAULT_SETTINGS.near_duplicates
    assert json.loads(settings_to_json(settings))["quality"]["min_chars"] == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"quality": {"min_chars": "3"}}', "quality.min_chars must be an integer, got '3'"),
        ('{"quality": {"min_alpha_ratio": 1.5}}', "quality.min_alpha_ratio must be in [0, 1]"),
        ('{"quality": {"min_ratio": 1}}', "quality.min_ratio is not a setting"),
        ('{"redactors": ["email", "names"]}', "redactors must be names from"),
        ('{"redactors": "email"}', "redactors must be a list of strings"),
        ('{"near_duplicates": {"threshold": 2}}', "near_duplicates: near-duplicate threshold"),
        ('{"near_duplicates": {"enabled": 1}}', "near_duplicates.enabled must be true or false"),
        ('{"segment_bytes": 0}', "segment_bytes must be >= 1"),
        ('{"quality": {"languages": ["english"]}}', "quality.languages must be lower-case ISO"),
        ('{"quality": {"languages": ["EN"]}}', "quality.languages must be lower-case ISO"),
        ('{"quality": {"languages": "en"}}', "quality.languages must be a list of strings"),
        ('{"chunk_records": 1.5}', "chunk_records must be an integer"),
        ('{"write_transactions_in_flight": 0}', "write_transactions_in_flight must be in [1, 10]"),
        ('{"write_transactions_in_flight": 11}', "write_transactions_in_flight must be in [1, 10]"),
        ("[]", "ingest settings must be an object"),
        ("{oops", "invalid JSON"),
    ],
)
def test_unusable_settings_name_the_field(text: str, message: str) -> None:
    with pytest.raises(IngestSettingsError) as caught:
        settings_from_json(text)
    assert str(caught.value).startswith("ingest settings: ")
    assert message in str(caught.value)


def test_settings_validate_when_built_directly() -> None:
    with pytest.raises(IngestSettingsError, match=r"quality\.max_chars must be > min_chars"):
        IngestSettings(quality=QualitySettings(min_chars=10, max_chars=5))


def test_aws_stages_overlap_record_writes_and_the_local_stage_does_not() -> None:
    # DynamoDB isolates transactions; moto (local platform) fails when two overlap.
    assert load_stage_config("dev").ingest.write_transactions_in_flight == 4
    assert load_stage_config("prod").ingest.write_transactions_in_flight == 4
    assert load_stage_config("local").ingest.write_transactions_in_flight == 1


def test_overrides_merge_onto_a_stages_settings_field_by_field() -> None:
    base = load_stage_config("dev").ingest
    merged = settings_with(base, '{"quality": {"min_chars": 9}, "redactors": ["comprehend"]}')
    assert merged.quality == QualitySettings(min_chars=9)  # the other thresholds kept
    assert merged.redactors == ("comprehend",)
    assert merged.write_transactions_in_flight == base.write_transactions_in_flight == 4
    with pytest.raises(IngestSettingsError, match=r"quality\.min_chars must be an integer"):
        settings_with(base, {"quality": {"min_chars": "9"}})
    with pytest.raises(IngestSettingsError, match="must be an object"):
        settings_with(base, "[1]")
