"""The Records items of one drop file: the store's item plus the drop's source, the
record's metadata, and a pointer to S3 for bodies too large for DynamoDB."""

from __future__ import annotations

import json
from typing import Any

from tuneloop.ingest.curated import put_body
from tuneloop.ingest.model import Candidate
from tuneloop.ingest.store import DynamoRecordStore

# DynamoDB's item limit is 400 KB; an item estimated above this keeps its body in S3.
MAX_ITEM_BYTES = 350 * 1024


def _size_proxy(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def item_bytes(item: dict[str, Any]) -> int:
    """An over-estimate of the item's DynamoDB size (names + values, binary as hex)."""
    return len(json.dumps(item, ensure_ascii=False, default=_size_proxy).encode("utf-8"))


class DropRecordStore(DynamoRecordStore):
    """``DynamoRecordStore`` whose items also carry ``source`` (from the drop manifest) and
    ``metadata`` (e.g. a log entry's level, timestamp and logger). With ``bodies_bucket``,
    an item over ``MAX_ITEM_BYTES`` stores its body at
    ``s3://<bodies_bucket>/records/<dataset>/<record_id>.json`` and keeps ``body_s3_uri``
    instead of ``text``/``messages``."""

    def __init__(
        self,
        table_name: str,
        *,
        dataset: str,
        source_key: str,
        source: str = "",
        bodies_bucket: str = "",
        max_in_flight: int = 1,
    ) -> None:
        super().__init__(
            table_name, dataset=dataset, source_key=source_key, max_in_flight=max_in_flight
        )
        self.source = source
        self.bodies_bucket = bodies_bucket

    def item(self, drop_id: str, candidate: Candidate, ingested_at: str) -> dict[str, Any]:
        item = super().item(drop_id, candidate, ingested_at)
        if self.source:
            item["source"] = self.source
        if candidate.metadata:
            item["metadata"] = candidate.metadata
        if self.bodies_bucket and item_bytes(item) > MAX_ITEM_BYTES:
            # Written before the conditional insert: a duplicate rewrites the same content.
            item["body_s3_uri"] = put_body(self.bodies_bucket, self.dataset, candidate)
            item.pop("text", None)
            item.pop("messages", None)
        return item
