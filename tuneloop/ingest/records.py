"""The Records items of one drop file: the store's item plus the drop's source and the
record's metadata."""

from __future__ import annotations

from typing import Any

from tuneloop.ingest.model import Candidate
from tuneloop.ingest.store import DynamoRecordStore


class DropRecordStore(DynamoRecordStore):
    """``DynamoRecordStore`` whose items also carry ``source`` (from the drop manifest) and
    ``metadata`` (e.g. a log entry's level, timestamp and logger)."""

    def __init__(self, table_name: str, *, dataset: str, source_key: str, source: str = "") -> None:
        super().__init__(table_name, dataset=dataset, source_key=source_key)
        self.source = source

    def item(self, drop_id: str, candidate: Candidate, ingested_at: str) -> dict[str, Any]:
        item = super().item(drop_id, candidate, ingested_at)
        if self.source:
            item["source"] = self.source
        if candidate.metadata:
            item["metadata"] = candidate.metadata
        return item
