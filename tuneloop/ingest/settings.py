"""Ingestion settings with their defaults: redaction, quality filters, near-duplicates."""

from __future__ import annotations

from dataclasses import dataclass, field

from tuneloop.ingest.redaction import REGISTRY


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


@dataclass(frozen=True)
class NearDuplicateSettings:
    enabled: bool = True
    # Estimated Jaccard similarity of word shingles at or above which a record is a
    # near-duplicate of an earlier one.
    threshold: float = 0.8
    shingle_size: int = 5
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


DEFAULT_SETTINGS = IngestSettings()
