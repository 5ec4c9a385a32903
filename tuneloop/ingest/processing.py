"""What happens to a valid record before dedup: redact, filter for quality, add features.

Redaction runs first so that nothing downstream (dedup keys, signatures, features, the
stored item, logs) ever sees the personal data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from tuneloop.ingest.features import detect_language, record_features
from tuneloop.ingest.model import LINE, Candidate, Content, Message, Rejection, reject
from tuneloop.ingest.quality import check_quality
from tuneloop.ingest.redaction import Redactor, redact, redactors_named
from tuneloop.ingest.settings import IngestSettings, QualitySettings


def redact_content(
    content: Content, redactors: Sequence[Redactor]
) -> tuple[Content, dict[str, int]]:
    """The content with every finding replaced by its placeholder, and counts per type."""
    if not redactors:
        return content, {}
    if content.text is not None:
        result = redact(content.text, redactors)
        return Content(text=result.text), result.counts
    counts: dict[str, int] = {}
    turns: list[Message] = []
    for message in content.messages or ():
        result = redact(message.content, redactors)
        turns.append(Message(role=message.role, content=result.text))
        for kind, count in result.counts.items():
            counts[kind] = counts.get(kind, 0) + count
    return Content(messages=tuple(turns)), counts


@dataclass(frozen=True)
class RecordProcessor:
    redactors: Sequence[Redactor]
    quality: QualitySettings
    tags: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: IngestSettings, tags: tuple[str, ...] = ()) -> RecordProcessor:
        return cls(redactors_named(settings.redactors), settings.quality, tags)

    def redact(self, candidate: Candidate) -> Candidate:
        content, counts = redact_content(candidate.content, self.redactors)
        metadata = dict(candidate.metadata)
        for key, value in candidate.metadata.items():
            result = redact(value, self.redactors)
            metadata[key] = result.text
            for kind, count in result.counts.items():
                counts[kind] = counts.get(kind, 0) + count
        return dataclasses.replace(candidate, content=content, redactions=counts, metadata=metadata)

    def finish(
        self, file: str, candidate: Candidate, raw: str, *, unit: str = LINE
    ) -> Candidate | Rejection:
        """Quality filters and features of an already redacted candidate."""
        text = candidate.content.plain_text()
        # Detected once when the language filter needs it, and reused as a feature.
        language = detect_language(text) if self.quality.languages else None
        issue = check_quality(text, self.quality, language)
        if issue is not None:
            return reject(file, candidate.line, issue.reason, issue.detail, raw, unit=unit)
        shape = "shape:text" if candidate.content.text is not None else "shape:chat"
        features = record_features(text, (*self.tags, shape), language)
        return dataclasses.replace(candidate, features=features)
