"""Ingestion settings with their defaults: redaction, quality filters, near-duplicates,
chunk and segment sizes.

On AWS they come from the stage config (``StageConfig.ingest``) as the Ingest function's
``INGEST_SETTINGS`` JSON; ``settings_from_json`` reads it, with errors naming the field.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from tuneloop.ingest.redaction import REGISTRY, available_names
from tuneloop.settings_keys import did_you_mean


def _all_redactors() -> tuple[str, ...]:
    return tuple(REGISTRY)


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the quality filters; each rejection has its own reason code."""

    # "too_short" / "too_long": characters of the record's text (all turns of a chat).
    min_chars: int = 3
    max_chars: int = 200_000
    # "repetitive": only judged on texts of at least this many words.
    repetition_min_words: int = 20
    # The most frequent word may make up at most this share of all words...
    max_top_word_ratio: float = 0.3
    # ...and at most this share of word 3-grams may repeat an earlier one.
    max_repeated_trigram_ratio: float = 0.5
    # "not_text": letters must make up at least this share of non-space characters.
    min_alpha_ratio: float = 0.25
    # "wrong_language": ISO 639-1 codes a record's detected language must be one of; empty
    # keeps every language. A text too short or mixed to tell ("und") is always kept.
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class NearDuplicateSettings:
    enabled: bool = True
    # Estimated Jaccard similarity of word shingles at or above which a record is a
    # near-duplicate of an earlier one. Word pairs at 0.7: one word changed in a record of
    # 20 words leaves 17 of 21 pairs shared (0.81), where 5-word shingles left 11 of 21
    # (0.52) and missed most one-word edits of short records (benchmarks/near_dup_quality.py).
    threshold: float = 0.7
    shingle_size: int = 2
    num_perm: int = 128
    seed: int = 1
    # LSH banding over the first bands x rows hash values; a pair is verified on all
    # num_perm. 9 bands of 4 rows nominate a pair of Jaccard 0.8 with probability 0.991
    # (1 - (1 - 0.8**4)**9) while writing only 9 index entries per stored record.
    bands: int = 9
    rows: int = 4
    # Record ids kept per LSH band item: a band shared by this many records (boilerplate)
    # stops growing rather than approaching DynamoDB's 400 KB item limit.
    max_ids_per_band: int = 1000
    # Numbers, ids and dates (words holding a digit) distinguish records: two records whose
    # digit-bearing words differ are never near-duplicates, however similar the rest.
    distinct_numbers: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {self.threshold}")
        if min(self.shingle_size, self.num_perm, self.bands, self.rows) < 1:
            raise ValueError("shingle_size, num_perm, bands and rows must be positive")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands x rows ({self.bands} x {self.rows}) exceeds num_perm ({self.num_perm})"
            )


@dataclass(frozen=True)
class IngestSettings:
    redactors: tuple[str, ...] = field(default_factory=_all_redactors)
    quality: QualitySettings = field(default_factory=QualitySettings)
    near_duplicates: NearDuplicateSettings = field(default_factory=NearDuplicateSettings)
    # Records accounted for (validated, deduplicated, written) together; bounds memory.
    chunk_records: int = 1000
    # A file larger than this is split into segments of about this size, each ingested by
    # its own invocation (segments.py); sized so a segment fits the Lambda's time limit.
    segment_bytes: int = 64 * 1024 * 1024
    # TransactWriteItems calls (100 records each) in flight per file. One by default: moto,
    # which tests and the local platform run on, fails when two overlap; the AWS stages
    # raise it, as DynamoDB isolates transactions and the write is bound by round trips.
    write_transactions_in_flight: int = 1
    # A line (or a record over several lines: a CSV row, a paragraph, a log entry, a JSON
    # array item) longer than this is quarantined by its size without being held whole:
    # twice the 4 MB a record may hold, room for JSON escapes.
    max_line_bytes: int = 8 * 1024 * 1024
    # A chunk also ends when its records' source bytes reach this, so a file of large
    # records holds no more than about this much of them at once.
    chunk_bytes: int = 16 * 1024 * 1024
    # Characters of a rejected record's raw text kept in the quarantine file (after
    # redaction): enough to find and fix it, never the whole of a huge line.
    quarantine_excerpt_chars: int = 1024

    def __post_init__(self) -> None:
        problems = settings_problems(self)
        if problems:
            details = "; ".join(f"{name} {text}" for name, text in problems)
            raise IngestSettingsError(f"ingest settings: {details}")


class IngestSettingsError(ValueError):
    """Ingest settings that cannot be used; the message names the field."""


def settings_problems(settings: IngestSettings) -> list[tuple[str, str]]:
    """(field, what is wrong) for every unusable value; empty when the settings are fine."""
    found: list[tuple[str, str]] = []

    def check(name: str, ok: bool, expectation: str, value: Any) -> None:
        if not ok:
            found.append((name, f"must be {expectation}, got {value!r}"))

    known = available_names()
    unknown = [name for name in settings.redactors if name not in known]
    check("redactors", not unknown, f"names from {', '.join(known)}", unknown)
    quality = settings.quality
    check("quality.min_chars", quality.min_chars >= 0, ">= 0", quality.min_chars)
    check(
        "quality.max_chars", quality.max_chars > quality.min_chars, "> min_chars", quality.max_chars
    )
    check(
        "quality.repetition_min_words",
        quality.repetition_min_words >= 1,
        ">= 1",
        quality.repetition_min_words,
    )
    # Lower case, as detection reports them: "EN" would quarantine every English record.
    odd = [c for c in quality.languages if not (len(c) == 2 and c.isalpha() and c.islower())]
    check("quality.languages", not odd, "lower-case ISO 639-1 codes such as 'en'", odd)
    for name in ("max_top_word_ratio", "max_repeated_trigram_ratio", "min_alpha_ratio"):
        value = getattr(quality, name)
        check(f"quality.{name}", 0.0 <= value <= 1.0, "in [0, 1]", value)
    near = settings.near_duplicates
    check(
        "near_duplicates.max_ids_per_band",
        near.max_ids_per_band >= 1,
        ">= 1",
        near.max_ids_per_band,
    )
    check("chunk_records", settings.chunk_records >= 1, ">= 1", settings.chunk_records)
    check("segment_bytes", settings.segment_bytes >= 1, ">= 1", settings.segment_bytes)
    in_flight = settings.write_transactions_in_flight
    # boto3's default connection pool holds 10; more would queue for a connection.
    check("write_transactions_in_flight", 1 <= in_flight <= 10, "in [1, 10]", in_flight)
    check("max_line_bytes", settings.max_line_bytes >= 1024, ">= 1024", settings.max_line_bytes)
    check("chunk_bytes", settings.chunk_bytes >= 1, ">= 1", settings.chunk_bytes)
    excerpt = settings.quarantine_excerpt_chars
    check("quarantine_excerpt_chars", 0 <= excerpt <= 20_000, "in [0, 20000]", excerpt)
    return found


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return list(value)
    return value


def settings_to_json(settings: IngestSettings) -> str:
    """The ``INGEST_SETTINGS`` environment value (every field, defaults included)."""
    return json.dumps(_plain(settings), sort_keys=True, separators=(",", ":"))


def settings_from_json(text: str) -> IngestSettings:
    """Parse ``INGEST_SETTINGS``; fields left out keep their defaults."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestSettingsError(f"ingest settings: invalid JSON: {exc}") from exc
    return settings_from_dict(value)


def settings_with(base: IngestSettings, overrides: Any) -> IngestSettings:
    """``base`` with the fields in ``overrides`` (an object, or its JSON text) replaced;
    nested objects (``quality``, ``near_duplicates``) are merged field by field."""
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as exc:
            raise IngestSettingsError(f"ingest settings: invalid JSON: {exc}") from exc
    if not isinstance(overrides, dict):
        raise IngestSettingsError(f"ingest settings must be an object, got {overrides!r}")
    merged = _plain(base)
    for name, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return settings_from_dict(merged)


def settings_from_dict(value: Any) -> IngestSettings:
    settings: IngestSettings = _build(IngestSettings, value, "")
    return settings


def _build(cls: type[Any], value: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "ingest settings"
    if not isinstance(value, dict):
        raise IngestSettingsError(f"ingest settings: {where} must be an object, got {value!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise IngestSettingsError(
            f"ingest settings: {prefix}{unknown[0]} is not a setting"
            f"{did_you_mean(unknown[0], names)}; "
            f"the settings{' of ' + where if prefix else ''} are {', '.join(sorted(names))}"
        )
    arguments = {name: _field(hints[name], raw, f"{prefix}{name}") for name, raw in value.items()}
    try:
        return cls(**arguments)
    except IngestSettingsError:
        raise
    except ValueError as exc:
        raise IngestSettingsError(f"ingest settings: {where}: {exc}") from exc


def _field(kind: Any, raw: Any, name: str) -> Any:
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _build(kind, raw, f"{name}.")
    expected: dict[Any, tuple[tuple[type[Any], ...], str]] = {
        bool: ((bool,), "true or false"),
        int: ((int,), "an integer"),
        float: ((int, float), "a number"),
    }
    if kind in expected:
        types, wanted = expected[kind]
        if (isinstance(raw, bool) and kind is not bool) or not isinstance(raw, types):
            raise IngestSettingsError(f"ingest settings: {name} must be {wanted}, got {raw!r}")
        return float(raw) if kind is float else raw
    if kind == tuple[str, ...]:
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            detail = f"must be a list of strings, got {raw!r}"
            raise IngestSettingsError(f"ingest settings: {name} {detail}")
        return tuple(raw)
    return raw


DEFAULT_SETTINGS = IngestSettings()
