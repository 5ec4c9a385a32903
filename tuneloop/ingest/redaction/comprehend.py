"""Amazon Comprehend ``DetectPiiEntities`` as a redactor, for what patterns cannot find.

Names and postal addresses need a model. This redactor is optional (it costs a request per
text and Comprehend accepts at most 100 KB of UTF-8 per call); the client is injected, so
tests use a fake and nothing calls AWS unless a deployment opts in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from tuneloop.ingest.redaction.base import Finding

# Comprehend's limit is 100 KB of UTF-8; texts are cut into chunks at most this long.
MAX_CHUNK_CHARS = 20_000
DEFAULT_TYPES = frozenset({"NAME", "ADDRESS"})


class ComprehendClient(Protocol):
    # Parameter names are boto3's.
    def detect_pii_entities(self, *, Text: str, LanguageCode: str) -> dict[str, Any]: ...  # noqa: N803


class ComprehendRedactor:
    name = "comprehend"

    def __init__(
        self,
        client: ComprehendClient,
        *,
        types: frozenset[str] = DEFAULT_TYPES,
        min_score: float = 0.8,
        language_code: str = "en",
        priority: int = 20,
    ) -> None:
        self.client = client
        self.types = types
        self.min_score = min_score
        self.language_code = language_code
        self.priority = priority

    def find(self, text: str) -> Iterator[Finding]:
        for offset in range(0, len(text), MAX_CHUNK_CHARS):
            chunk = text[offset : offset + MAX_CHUNK_CHARS]
            response = self.client.detect_pii_entities(Text=chunk, LanguageCode=self.language_code)
            for entity in response.get("Entities", []):
                kind = str(entity.get("Type", ""))
                begin, end = int(entity["BeginOffset"]), int(entity["EndOffset"])
                if not 0 <= begin < end <= len(chunk):
                    continue  # not a span of this chunk: nothing to replace
                if kind in self.types and float(entity.get("Score", 0.0)) >= self.min_score:
                    yield Finding(offset + begin, offset + end, kind, self.priority)
