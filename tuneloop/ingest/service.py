"""Ingest one data drop: read, account for every record, quarantine, finish the manifest."""

from __future__ import annotations

import dataclasses
import json
import posixpath
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.ingest.accounting import FileOutcome, account_for_file
from tuneloop.ingest.drops import COMPLETE, DropsTable
from tuneloop.ingest.events import DropObject
from tuneloop.ingest.near_dup import DynamoNearDuplicateIndex
from tuneloop.ingest.parsing import parse_file
from tuneloop.ingest.redaction import redact, redactors_named
from tuneloop.ingest.settings import DEFAULT_SETTINGS, IngestSettings
from tuneloop.ingest.store import DynamoRecordStore
from tuneloop.retrain import start_retrain_if_due

QUARANTINE_PREFIX = "quarantine/"
# The manifest names the first near-duplicates (line, record, the record it matches); the
# count is always complete. Bounded so the item stays far below DynamoDB's 400 KB.
MAX_MANIFEST_NEAR_DUPLICATES = 100


class ReconciliationError(RuntimeError):
    """A record was neither stored, a duplicate, a near-duplicate nor quarantined: a bug,
    never a silent drop."""


@dataclass(frozen=True)
class IngestTables:
    records: str
    drops: str
    control: str


@dataclass(frozen=True)
class DropResult:
    key: str
    status: str  # "complete" (processed now), "already_complete" or "skipped"
    reason: str = ""
    drop_id: str = ""
    received: int = 0
    stored: int = 0
    duplicate: int = 0
    near_duplicate: int = 0
    quarantined: int = 0
    quarantine_uri: str = ""
    # Placeholders inserted per type (counts only: the redacted values are never kept).
    redactions: dict[str, int] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quarantine_key(drop_id: str, file_name: str) -> str:
    return f"{QUARANTINE_PREFIX}{drop_id}/{file_name}.jsonl"


def ingest_drop(
    obj: DropObject, tables: IngestTables, settings: IngestSettings = DEFAULT_SETTINGS
) -> DropResult:
    """Process one object of the raw bucket; safe to call again with the same event."""
    if not obj.is_drop:
        return DropResult(obj.key, "skipped", f"not a data drop (outside drops/): {obj.key}")
    drops = DropsTable(tables.drops)
    if obj.etag:
        existing = drops.get(obj.drop_id)
        if existing and existing.get("status") == COMPLETE:
            return _already_complete(obj.key, existing)
    read = _read_object(obj)
    if read is None:
        return DropResult(obj.key, "skipped", f"s3://{obj.bucket}/{obj.key} no longer exists")
    obj, body = read

    existing = drops.start(obj.drop_id, obj)
    if existing and existing.get("status") == COMPLETE:
        return _already_complete(obj.key, existing)

    parsed = parse_file(obj.key, body)
    items = list(parsed.items)
    store = DynamoRecordStore(tables.records, dataset=obj.dataset, source_key=obj.key)
    index = DynamoNearDuplicateIndex(
        control_table=tables.control,
        records_table=tables.records,
        dataset=obj.dataset,
        settings=settings.near_duplicates,
    )
    outcome = account_for_file(
        parsed,
        drop_id=obj.drop_id,
        store=store,
        settings=settings,
        index=index,
        tags=source_tags(obj),
    )
    if outcome.received != len(items):
        raise ReconciliationError(
            f"{obj.key}: {len(items)} records received but {outcome.received} accounted for"
        )
    quarantine_uri = _write_quarantine(obj, outcome, settings) if outcome.rejections else ""
    counts: dict[str, Any] = {
        "received": outcome.received,
        "stored": len(outcome.stored),
        "duplicate": len(outcome.duplicates),
        "near_duplicate": len(outcome.near_duplicates),
        "quarantined": len(outcome.rejections),
        "reasons": outcome.reasons(),
        "redactions": dict(outcome.redactions),
        "near_duplicates": [
            {
                "line": near.line,
                "record_id": near.record_id,
                "of": near.of,
                "similarity": Decimal(f"{near.similarity:.4f}"),
            }
            for near in outcome.near_duplicates[:MAX_MANIFEST_NEAR_DUPLICATES]
        ],
        "quarantine_uri": quarantine_uri,
    }
    finished = drops.complete(
        obj.drop_id, counts, control_table=tables.control, stored=len(outcome.stored)
    )
    return DropResult(
        key=obj.key,
        status=COMPLETE if finished else "already_complete",
        drop_id=obj.drop_id,
        received=counts["received"],
        stored=counts["stored"],
        duplicate=counts["duplicate"],
        near_duplicate=counts["near_duplicate"],
        quarantined=counts["quarantined"],
        quarantine_uri=quarantine_uri,
        redactions=counts["redactions"],
    )


def _already_complete(key: str, item: dict[str, Any]) -> DropResult:
    return DropResult(
        key=key,
        status="already_complete",
        reason="this drop was processed before (re-delivered event)",
        drop_id=str(item["drop_id"]),
        received=int(item.get("received", 0)),
        stored=int(item.get("stored", 0)),
        duplicate=int(item.get("duplicate", 0)),
        near_duplicate=int(item.get("near_duplicate", 0)),
        quarantined=int(item.get("quarantined", 0)),
        quarantine_uri=str(item.get("quarantine_uri", "")),
        redactions={k: int(v) for k, v in dict(item.get("redactions", {})).items()},
    )


def _read_object(obj: DropObject) -> tuple[DropObject, bytes] | None:
    # S3 notifications URL-encode keys; EventBridge is documented not to, but try both.
    for key in dict.fromkeys([obj.key, unquote_plus(obj.key)]):
        try:
            response = aws.s3().get_object(Bucket=obj.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                continue
            raise
        etag = obj.etag or str(response.get("ETag", "")).strip('"')
        return dataclasses.replace(obj, key=key, etag=etag), response["Body"].read()
    return None


def source_tags(obj: DropObject) -> tuple[str, ...]:
    """Where a record came from, as tags stored with its features."""
    extension = posixpath.splitext(obj.file_name)[1].lstrip(".").lower() or "none"
    return (f"dataset:{obj.dataset}", f"format:{extension}")


def _write_quarantine(obj: DropObject, outcome: FileOutcome, settings: IngestSettings) -> str:
    key = quarantine_key(obj.drop_id, obj.file_name)
    # Rejected lines are redacted too: the quarantine must not become a store of personal data.
    redactors = redactors_named(settings.redactors)
    lines = []
    for rejection in outcome.rejections:
        entry = rejection.to_json()
        entry["raw"] = redact(entry["raw"], redactors).text
        entry["message"] = redact(entry["message"], redactors).text
        lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
    body = "".join(lines)
    aws.s3().put_object(
        Bucket=obj.bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/x-ndjson"
    )
    return f"s3://{obj.bucket}/{key}"


def trigger_after_ingest(
    *, control_table: str, state_machine_arn: str, threshold: int
) -> dict[str, Any]:
    """Run the retrain trigger; a failure here must not fail a batch whose records are stored.

    The records and the pending counter are already persisted, so the scheduled trigger
    picks the run up later.
    """
    try:
        outcome = start_retrain_if_due(
            control_table=control_table,
            state_machine_arn=state_machine_arn,
            threshold=threshold,
            trigger="threshold",
        )
    except ClientError as exc:
        return {"started": False, "reason": f"retrain trigger failed, the schedule retries: {exc}"}
    return outcome.as_dict()
