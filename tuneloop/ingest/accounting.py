"""Where every record of a file ends up: stored, duplicate, near-duplicate or quarantined.

This module is pure apart from the ``RecordStore`` and ``NearDuplicateIndex`` it is given,
so the reconciliation rule (received = stored + duplicate + near_duplicate + quarantined)
is testable without AWS.

Order of the steps: validate → redact → quality filters and features → exact dedup →
near-dedup → store. Filters run before dedup so that a duplicate always points at a record
that was stored, never at one the filters threw away.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tuneloop.ingest.guard import unexpected
from tuneloop.ingest.minhash import MemoryLSH, MinHasher, NearMatch, Signature
from tuneloop.ingest.model import Candidate, Rejection
from tuneloop.ingest.parsing import ParsedFile
from tuneloop.ingest.processing import RecordProcessor
from tuneloop.ingest.settings import DEFAULT_SETTINGS, IngestSettings, NearDuplicateSettings
from tuneloop.ingest.validate import validate_entry


@dataclass(frozen=True)
class StoredAt:
    """Where an existing record came from (enough to tell a re-delivery from a duplicate)."""

    drop_id: str
    line: int


class RecordStore(Protocol):
    def insert_new(self, drop_id: str, candidates: Sequence[Candidate]) -> dict[str, StoredAt]:
        """Insert each candidate unless its record_id exists; return the existing ones."""
        ...


class NearDuplicateIndex(Protocol):
    """Signatures of stored records, across drops."""

    def find(self, items: Sequence[tuple[str, Signature]]) -> dict[str, NearMatch]:
        """The stored record each (record_id, signature) nearly duplicates, if any.

        A record that is itself already indexed matches nothing (a re-delivery or an exact
        duplicate, which the record store decides).
        """
        ...

    def add(self, items: Sequence[tuple[str, Signature]]) -> None:
        """Index stored records; adding one twice changes nothing."""
        ...


@dataclass(frozen=True)
class Duplicate:
    line: int
    record_id: str
    of: StoredAt


@dataclass(frozen=True)
class NearDuplicate:
    line: int
    record_id: str
    of: str  # record id of the stored record it matches
    similarity: float


@dataclass
class FileOutcome:
    file: str
    stored: list[Candidate] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    near_duplicates: list[NearDuplicate] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    redactions: Counter[str] = field(default_factory=Counter)

    @property
    def received(self) -> int:
        return (
            len(self.stored)
            + len(self.duplicates)
            + len(self.near_duplicates)
            + len(self.rejections)
        )

    def reasons(self) -> dict[str, int]:
        return dict(Counter(rejection.reason for rejection in self.rejections))


def account_for_file(
    parsed: ParsedFile,
    *,
    drop_id: str,
    store: RecordStore,
    text_field: str = "text",
    settings: IngestSettings = DEFAULT_SETTINGS,
    index: NearDuplicateIndex | None = None,
    tags: tuple[str, ...] = (),
) -> FileOutcome:
    """Validate, redact, filter, dedup (exact and near) and store the records of one file."""
    outcome = FileOutcome(file=parsed.file)
    processor = RecordProcessor.from_settings(settings, tags)
    first_line: dict[str, int] = {}
    unique: list[Candidate] = []
    for item in parsed.items:
        if isinstance(item, Rejection):
            outcome.rejections.append(item)
            continue
        stage = "validation"
        try:
            checked = validate_entry(parsed.file, item, text_field=text_field, unit=parsed.unit)
            if isinstance(checked, Rejection):
                outcome.rejections.append(checked)
                continue
            stage = "redaction"
            redacted = processor.redact(checked)
            stage = "quality filters"
            finished = processor.finish(parsed.file, redacted, item.raw, unit=parsed.unit)
        except Exception as exc:  # one record's surprise must not fail the others
            failed = unexpected(parsed.file, item.line, stage, exc, item.raw, unit=parsed.unit)
            outcome.rejections.append(failed)
            continue
        outcome.redactions.update(redacted.redactions)
        if isinstance(finished, Rejection):
            outcome.rejections.append(finished)
        elif finished.record_id in first_line:
            seen = StoredAt(drop_id=drop_id, line=first_line[finished.record_id])
            outcome.duplicates.append(Duplicate(finished.line, finished.record_id, seen))
        else:
            first_line[finished.record_id] = finished.line
            unique.append(finished)

    if settings.near_duplicates.enabled and unique:
        unique = _drop_near_duplicates(unique, outcome, settings.near_duplicates, index)

    existing = store.insert_new(drop_id, unique) if unique else {}
    for candidate in unique:
        found = existing.get(candidate.record_id)
        # A record this very drop stored at this line on an earlier delivery counts as
        # stored again, so a re-delivered event reproduces the same counts.
        if found is None or found == StoredAt(drop_id=drop_id, line=candidate.line):
            outcome.stored.append(candidate)
        else:
            outcome.duplicates.append(Duplicate(candidate.line, candidate.record_id, found))
    if index is not None and outcome.stored:
        index.add([(c.record_id, _signature(c)) for c in outcome.stored if c.minhash])
    return outcome


def _signature(candidate: Candidate) -> Signature:
    return candidate.minhash or b""


def _drop_near_duplicates(
    unique: list[Candidate],
    outcome: FileOutcome,
    settings: NearDuplicateSettings,
    index: NearDuplicateIndex | None,
) -> list[Candidate]:
    """Move near-duplicates (within the file, then of stored records) into the outcome."""
    hasher = MinHasher(
        settings.num_perm, settings.shingle_size, settings.seed, settings.distinct_numbers
    )
    signatures = hasher.signatures([c.content.plain_text() for c in unique])
    in_file = MemoryLSH(threshold=settings.threshold, bands=settings.bands, rows=settings.rows)
    kept: list[Candidate] = []
    local: list[NearDuplicate] = []
    for candidate, signature in zip(unique, signatures, strict=True):
        match = in_file.best_match(signature)
        if match is not None:
            local.append(
                NearDuplicate(candidate.line, candidate.record_id, match.of, match.similarity)
            )
            continue
        in_file.insert(candidate.record_id, signature)
        kept.append(dataclasses.replace(candidate, minhash=signature))

    earlier = index.find([(c.record_id, _signature(c)) for c in kept]) if index else {}
    for candidate in kept:
        if candidate.record_id in earlier:
            match = earlier[candidate.record_id]
            outcome.near_duplicates.append(
                NearDuplicate(candidate.line, candidate.record_id, match.of, match.similarity)
            )
    for near in local:
        # Point at a record that is stored: follow a match that was itself a near-duplicate.
        target = earlier.get(near.of)
        outcome.near_duplicates.append(dataclasses.replace(near, of=target.of) if target else near)
    outcome.near_duplicates.sort(key=lambda near: near.line)
    return [c for c in kept if c.record_id not in earlier]


@dataclass
class DropTally:
    """The counts of a drop (or a segment of one) summed over its chunks of records."""

    received: int = 0
    stored: int = 0
    duplicate: int = 0
    near_duplicate: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)
    # The first near-duplicates, for the manifest; the count above is always complete.
    near_duplicates: list[NearDuplicate] = field(default_factory=list)
    max_listed: int = 100

    def add(self, outcome: FileOutcome) -> None:
        self.received += outcome.received
        self.stored += len(outcome.stored)
        self.duplicate += len(outcome.duplicates)
        self.near_duplicate += len(outcome.near_duplicates)
        self.quarantined += len(outcome.rejections)
        self.reasons.update(outcome.reasons())
        self.redactions.update(outcome.redactions)
        room = self.max_listed - len(self.near_duplicates)
        self.near_duplicates.extend(outcome.near_duplicates[: max(room, 0)])

    def merge(self, other: DropTally) -> None:
        self.received += other.received
        self.stored += other.stored
        self.duplicate += other.duplicate
        self.near_duplicate += other.near_duplicate
        self.quarantined += other.quarantined
        self.reasons.update(other.reasons)
        self.redactions.update(other.redactions)
        room = self.max_listed - len(self.near_duplicates)
        self.near_duplicates.extend(other.near_duplicates[: max(room, 0)])

    @property
    def reconciles(self) -> bool:
        accounted = self.stored + self.duplicate + self.near_duplicate + self.quarantined
        return self.received == accounted


def chunks(items: Iterable[Any], size: int, max_bytes: int | None = None) -> Iterator[list[Any]]:
    """Lists of at most ``size`` items; with ``max_bytes``, a list also ends once its
    entries' source bytes (``Entry.size``) reach it."""
    iterator = iter(items)
    if max_bytes is None:
        while part := list(itertools.islice(iterator, size)):
            yield part
        return
    chunk: list[Any] = []
    held = 0
    for item in iterator:
        chunk.append(item)
        held += getattr(item, "size", 0)
        if len(chunk) >= size or held >= max_bytes:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def account_in_chunks(
    parsed: ParsedFile,
    *,
    drop_id: str,
    store: RecordStore,
    settings: IngestSettings = DEFAULT_SETTINGS,
    new_index: Callable[[], NearDuplicateIndex | None] = lambda: None,
    tags: tuple[str, ...] = (),
    on_chunk: Callable[[FileOutcome], None],
) -> None:
    """``account_for_file`` over ``settings.chunk_records`` records (and at most about
    ``settings.chunk_bytes`` of their source) at a time, so memory is bounded by the
    chunk, not the file; ``on_chunk`` takes each chunk's outcome.

    A duplicate of a record from an earlier chunk is found by the store (it exists
    already), a near-duplicate by the index (a fresh one per chunk from ``new_index``, so
    no cache grows with the file).
    """
    for chunk in chunks(parsed.items, settings.chunk_records, settings.chunk_bytes):
        part = ParsedFile(parsed.file, parsed.unit, chunk, parsed.format)
        outcome = account_for_file(
            part, drop_id=drop_id, store=store, settings=settings, index=new_index(), tags=tags
        )
        if outcome.received != len(chunk):
            raise AssertionError(
                f"{parsed.file}: {len(chunk)} records received but {outcome.received} accounted for"
            )
        on_chunk(outcome)
