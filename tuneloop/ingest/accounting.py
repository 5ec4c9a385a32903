"""Where every record of a file ends up: stored, duplicate of another record, or quarantined.

This module is pure apart from the ``RecordStore`` it is given, so the reconciliation rule
(received = stored + duplicate + quarantined) is testable without AWS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tuneloop.ingest.model import Candidate, Rejection
from tuneloop.ingest.parsing import ParsedFile
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


@dataclass(frozen=True)
class Duplicate:
    line: int
    record_id: str
    of: StoredAt


@dataclass
class FileOutcome:
    file: str
    stored: list[Candidate] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def received(self) -> int:
        return len(self.stored) + len(self.duplicates) + len(self.rejections)

    def reasons(self) -> dict[str, int]:
        return dict(Counter(rejection.reason for rejection in self.rejections))


def account_for_file(
    parsed: ParsedFile, *, drop_id: str, store: RecordStore, text_field: str = "text"
) -> FileOutcome:
    """Validate, dedup and store the records of one parsed file."""
    outcome = FileOutcome(file=parsed.file)
    first_line: dict[str, int] = {}
    unique: list[Candidate] = []
    for item in parsed.items:
        if isinstance(item, Rejection):
            outcome.rejections.append(item)
            continue
        checked = validate_entry(parsed.file, item, text_field=text_field, unit=parsed.unit)
        if isinstance(checked, Rejection):
            outcome.rejections.append(checked)
        elif checked.record_id in first_line:
            seen = StoredAt(drop_id=drop_id, line=first_line[checked.record_id])
            outcome.duplicates.append(Duplicate(checked.line, checked.record_id, seen))
        else:
            first_line[checked.record_id] = checked.line
            unique.append(checked)

    existing = store.insert_new(drop_id, unique) if unique else {}
    for candidate in unique:
        found = existing.get(candidate.record_id)
        # A record this very drop stored at this line on an earlier delivery counts as
        # stored again, so a re-delivered event reproduces the same counts.
        if found is None or found == StoredAt(drop_id=drop_id, line=candidate.line):
            outcome.stored.append(candidate)
        else:
            outcome.duplicates.append(Duplicate(candidate.line, candidate.record_id, found))
    return outcome
