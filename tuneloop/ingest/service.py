"""Ingest one data drop: stream, account for every record, quarantine, finish the manifest.

A file is read as a stream and accounted for in chunks of ``IngestSettings.chunk_records``
records, so memory stays bounded whatever the file's size; the quarantine file is spooled
and uploaded once at the end.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.ingest import objects
from tuneloop.ingest.accounting import DropTally, FileOutcome, account_in_chunks
from tuneloop.ingest.curated import CuratedWriter, curated_key
from tuneloop.ingest.drops import COMPLETE, DropsTable, SegmentedDrops
from tuneloop.ingest.events import DropObject, dataset_name_problem, parse_drop_event
from tuneloop.ingest.manifest import DEFAULTS as DEFAULT_MANIFEST
from tuneloop.ingest.manifest import DropManifest, ManifestError, is_manifest_key, load_manifest
from tuneloop.ingest.model import Rejection
from tuneloop.ingest.near_dup import DynamoNearDuplicateIndex
from tuneloop.ingest.parsing import ReadOptions, data_extension, format_of, parse_stream
from tuneloop.ingest.quarantine import QUARANTINE_PREFIX, QuarantineWriter, quarantine_key
from tuneloop.ingest.reading import GZIP_MAGIC
from tuneloop.ingest.records import DropRecordStore
from tuneloop.ingest.redaction import redactors_named
from tuneloop.ingest.segments import (
    LINE_FORMATS,
    Segment,
    SegmentMessage,
    parquet_row_groups,
    parse_segment_message,
    plan_line_segments,
    plan_parquet_segments,
)
from tuneloop.ingest.settings import DEFAULT_SETTINGS, IngestSettings
from tuneloop.model_line_settings import ModelLines
from tuneloop.retrain import pending_attributes, start_retrain_if_due, untrained_dataset_note

__all__ = [
    "QUARANTINE_PREFIX",
    "DropResult",
    "IngestTables",
    "ingest_drop",
    "ingest_message",
    "ingest_segment",
    "quarantine_key",
]

# The manifest names the first near-duplicates (line, record, the record it matches); the
# count is always complete. Bounded so the item stays far below DynamoDB's 400 KB.
MAX_MANIFEST_NEAR_DUPLICATES = 100
# Read-ahead over an S3 object for Parquet's ranged reads.
RANGE_BUFFER_BYTES = 1024 * 1024
MAX_SQS_BATCH = 10


class ReconciliationError(RuntimeError):
    """A record was neither stored, a duplicate, a near-duplicate nor quarantined: a bug,
    never a silent drop."""


@dataclass(frozen=True)
class IngestTables:
    records: str
    drops: str
    control: str
    # Bodies of records too large for DynamoDB and the curated copies; "" leaves both out.
    curated_bucket: str = ""
    # Which retrain counters a drop's stored records add to: its dataset's lines' (none:
    # the one counter). Not a table, but what the Control table's counters are kept by.
    model_lines: ModelLines = dataclasses.field(default_factory=ModelLines)

    def pending(self, dataset: str) -> tuple[str, ...]:
        return pending_attributes(dataset, self.model_lines)


@dataclass(frozen=True)
class DropResult:
    key: str
    # "complete" (processed now), "already_complete", "skipped" or "segmented" (split
    # into segments that other invocations process)
    status: str
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


def ingest_message(
    body: str,
    tables: IngestTables,
    settings: IngestSettings = DEFAULT_SETTINGS,
    *,
    queue_url: str = "",
) -> DropResult:
    """Process one ingest-queue message: an S3 event, or a segment of a large drop."""
    try:
        decoded: Any = json.loads(body)
    except json.JSONDecodeError:
        decoded = None
    segment = parse_segment_message(decoded)
    if segment is not None:
        return ingest_segment(segment, tables, settings)
    return ingest_drop(parse_drop_event(body), tables, settings, queue_url=queue_url)


def is_segment_message(body: str) -> bool:
    try:
        return parse_segment_message(json.loads(body)) is not None
    except (json.JSONDecodeError, KeyError, TypeError):
        return False


def defer_message(queue_url: str, body: str) -> None:
    """Send a message back to the queue as a new one (a fresh receive count): a segment
    that would not finish in what is left of this invocation runs in another."""
    _send(queue_url, [body])


def ingest_drop(
    obj: DropObject,
    tables: IngestTables,
    settings: IngestSettings = DEFAULT_SETTINGS,
    *,
    queue_url: str = "",
) -> DropResult:
    """Process one object of the raw bucket; safe to call again with the same event.

    With ``queue_url``, an object over ``settings.segment_bytes`` is split into segments
    sent to that queue (segments.py) instead of being processed here.
    """
    if not obj.is_drop:
        return DropResult(obj.key, "skipped", f"not a data drop (outside drops/): {obj.key}")
    if is_manifest_key(obj.key):
        return DropResult(obj.key, "skipped", f"a drop manifest, not data: {obj.key}")
    drops = DropsTable(tables.drops)
    if obj.etag:
        existing = drops.get(obj.drop_id)
        if existing and existing.get("status") == COMPLETE:
            return _already_complete(obj.key, existing)
    found = _locate(obj)
    if found is None:
        return DropResult(obj.key, "skipped", f"s3://{obj.bucket}/{obj.key} no longer exists")
    obj = found

    existing = drops.start(obj.drop_id, obj)
    if existing and existing.get("status") == COMPLETE:
        return _already_complete(obj.key, existing)
    if existing and existing.get("segments"):
        return _resend_segments(obj, int(existing["segments"]), tables, queue_url)

    if queue_url and obj.size > settings.segment_bytes:
        segmented = _split(obj, tables, settings, queue_url)
        if segmented is not None:
            return segmented

    tally, quarantine_uri = _process(
        obj, tables, settings, quarantine_name=obj.file_name, part=0, segment=None
    )
    counts = _manifest_counts(tally, quarantine_uri)
    finished = drops.complete(
        obj.drop_id,
        counts,
        control_table=tables.control,
        stored=tally.stored,
        pending=tables.pending(obj.dataset),
    )
    return DropResult(
        key=obj.key,
        status=COMPLETE if finished else "already_complete",
        reason=untrained_dataset_note(obj.dataset, tables.model_lines),
        drop_id=obj.drop_id,
        received=tally.received,
        stored=tally.stored,
        duplicate=tally.duplicate,
        near_duplicate=tally.near_duplicate,
        quarantined=tally.quarantined,
        quarantine_uri=quarantine_uri,
        redactions=dict(tally.redactions),
    )


def ingest_segment(
    message: SegmentMessage, tables: IngestTables, settings: IngestSettings = DEFAULT_SETTINGS
) -> DropResult:
    """Process one segment of a large drop; the last one to finish completes the drop."""
    obj, segment = message.obj, message.segment
    drops = SegmentedDrops(tables.drops)
    own_id = message.segment_id
    existing = drops.get(own_id)
    if existing is None:
        raise SegmentError(f"{own_id}: no segment item; the drop was not planned")
    if existing.get("status") == COMPLETE:
        drops.finish_if_done(obj.drop_id)  # a crash between the two steps is repaired here
        return _already_complete(obj.key, {**existing, "drop_id": own_id})

    tally, quarantine_uri = _process(
        obj,
        tables,
        settings,
        quarantine_name=f"{obj.file_name}.{segment.index:05d}",
        part=segment.index,
        segment=segment,
    )
    counts = _manifest_counts(tally, quarantine_uri)
    finished = drops.complete_segment(
        own_id,
        obj.drop_id,
        counts,
        control_table=tables.control,
        stored=tally.stored,
        pending=tables.pending(obj.dataset),
    )
    drops.finish_if_done(obj.drop_id)
    untrained = untrained_dataset_note(obj.dataset, tables.model_lines)
    return DropResult(
        key=obj.key,
        status=COMPLETE if finished else "already_complete",
        reason=f"segment {segment.index + 1} of {message.count}"
        + (f"; {untrained}" if untrained else ""),
        drop_id=own_id,
        received=tally.received,
        stored=tally.stored,
        duplicate=tally.duplicate,
        near_duplicate=tally.near_duplicate,
        quarantined=tally.quarantined,
        quarantine_uri=quarantine_uri,
        redactions=dict(tally.redactions),
    )


def _process(
    obj: DropObject,
    tables: IngestTables,
    settings: IngestSettings,
    *,
    quarantine_name: str,
    part: int,
    segment: Segment | None,
) -> tuple[DropTally, str]:
    """Account for the object (or one segment of it): the tally and the quarantine URI.

    Rejections go to the quarantine file, stored records to the curated copy (when the
    curated bucket is configured); both are uploaded before the caller completes the drop.
    """
    tally = DropTally(max_listed=MAX_MANIFEST_NEAR_DUPLICATES)
    redactors = redactors_named(settings.redactors)
    key = quarantine_key(obj.drop_id, quarantine_name)
    # The dataset names S3 and DynamoDB keys: a bad name stores nothing anywhere.
    bad_name = dataset_name_problem(obj.dataset)
    with ExitStack() as stack:
        quarantine = stack.enter_context(
            QuarantineWriter(
                obj.bucket, key, redactors, excerpt_chars=settings.quarantine_excerpt_chars
            )
        )
        curated = None
        if tables.curated_bucket and bad_name is None:
            curated = stack.enter_context(
                CuratedWriter(
                    tables.curated_bucket, curated_key(obj.dataset, obj.drop_id, part), obj.key
                )
            )
        manifest, rejection = _governing_manifest(obj, bad_name)
        if rejection is not None:
            tally.received, tally.quarantined = 1, 1
            tally.reasons[rejection.reason] += 1
            quarantine.write([rejection])
        else:
            options = read_options(manifest, settings)
            byte_range: tuple[int, int | None] = (0, None)
            if segment is not None:
                options = dataclasses.replace(
                    options,
                    first_line=segment.first_line,
                    csv_header=segment.csv_header,
                    row_groups=segment.row_groups,
                    first_row=segment.first_row,
                )
                byte_range = (segment.start, segment.end)

            def on_chunk(outcome: FileOutcome) -> None:
                tally.add(outcome)
                quarantine.write(outcome.rejections)
                if curated is not None:
                    curated.write(outcome.stored)

            _account_for_object(obj, manifest, tables, settings, options, byte_range, on_chunk)
        quarantine_uri = quarantine.upload()
        if curated is not None:
            curated.upload()
    if not tally.reconciles:
        raise ReconciliationError(
            f"{obj.key}: {tally.received} records received but "
            f"{tally.received - tally.quarantined} not accounted for"
        )
    return tally, quarantine_uri


class SegmentError(RuntimeError):
    """A segment message whose drop has no plan; retried, then the DLQ."""


def _split(
    obj: DropObject, tables: IngestTables, settings: IngestSettings, queue_url: str
) -> DropResult | None:
    """Plan the segments of a large object and send them, or None when it cannot be split
    (gzip, a JSON document, an invalid manifest or dataset name: processed here, streaming)."""
    if dataset_name_problem(obj.dataset) is not None:
        return None
    try:
        manifest = load_manifest(obj.bucket, obj.key, dataset=obj.dataset)
    except ManifestError:
        return None
    file_format = format_of(obj.key, manifest.format)
    if file_format is None or _starts_with_gzip(obj):
        return None
    if file_format == "parquet":
        source = io.BufferedReader(
            objects.RangeFile(obj.bucket, obj.key, obj.size), RANGE_BUFFER_BYTES
        )
        try:
            groups = parquet_row_groups(source)
        except Exception:  # an unreadable file is quarantined by the whole-file path
            return None
        planned = plan_parquet_segments(groups, settings.segment_bytes)
    elif file_format in LINE_FORMATS:
        with objects.open_range(obj.bucket, obj.key) as stream:
            planned = plan_line_segments(
                stream, file_format, settings.segment_bytes, settings.max_line_bytes
            )
    else:
        return None
    if len(planned) < 2:
        return None
    messages = [SegmentMessage(obj, segment, len(planned)) for segment in planned]
    drops = SegmentedDrops(tables.drops)
    drops.plan(obj.drop_id, [(m.segment_id, m.to_json()) for m in messages], obj)
    _send(queue_url, [m.to_json() for m in messages])
    return DropResult(
        obj.key,
        "segmented",
        f"split into {len(messages)} segments of at most about "
        f"{settings.segment_bytes} bytes, each ingested by its own invocation",
        drop_id=obj.drop_id,
    )


def _resend_segments(
    obj: DropObject, count: int, tables: IngestTables, queue_url: str
) -> DropResult:
    """A re-delivered event of a segmented drop: send the unfinished segments again (a
    first delivery may have stopped before sending all); finished ones are skipped."""
    drops = SegmentedDrops(tables.drops)
    pending = drops.unfinished_messages(obj.drop_id, count)
    if pending and queue_url:
        _send(queue_url, pending)
    finished = drops.finish_if_done(obj.drop_id)
    if finished is not None and finished.get("status") == COMPLETE:
        return _already_complete(obj.key, finished)
    return DropResult(
        obj.key,
        "segmented",
        f"{count} segments, {len(pending)} not finished (sent again)",
        drop_id=obj.drop_id,
    )


def _send(queue_url: str, bodies: list[str]) -> None:
    sqs = aws.client("sqs")
    for start in range(0, len(bodies), MAX_SQS_BATCH):
        batch = bodies[start : start + MAX_SQS_BATCH]
        entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(batch)]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        failed = response.get("Failed", [])
        if failed:
            raise SegmentError(f"could not queue {len(failed)} segments: {failed[0]}")


def _starts_with_gzip(obj: DropObject) -> bool:
    with objects.open_range(obj.bucket, obj.key, 0, 2) as head:
        return head.read(2) == GZIP_MAGIC


def _governing_manifest(
    obj: DropObject, bad_name: str | None
) -> tuple[DropManifest, Rejection | None]:
    """The manifest that governs the object, or the one rejection of the whole file (a
    dataset name that cannot be used, an invalid manifest)."""
    if bad_name is not None:
        rejection = Rejection(
            file=obj.key,
            line=0,
            reason="invalid_dataset_name",
            field=None,
            message=f"{obj.key}: {bad_name}",
            raw="",
        )
        return DEFAULT_MANIFEST, rejection
    try:
        return load_manifest(obj.bucket, obj.key, dataset=obj.dataset), None
    except ManifestError as exc:
        return DEFAULT_MANIFEST, _manifest_rejection(obj, exc)


def _manifest_rejection(obj: DropObject, exc: ManifestError) -> Rejection:
    return Rejection(
        file=obj.key,
        line=0,
        reason=exc.reason,
        field=exc.field,
        message=f"{obj.key}: {exc}",
        raw="",
    )


def _manifest_counts(tally: DropTally, quarantine_uri: str) -> dict[str, Any]:
    return {
        "received": tally.received,
        "stored": tally.stored,
        "duplicate": tally.duplicate,
        "near_duplicate": tally.near_duplicate,
        "quarantined": tally.quarantined,
        "reasons": dict(tally.reasons),
        "redactions": dict(tally.redactions),
        "near_duplicates": [
            {
                "line": near.line,
                "record_id": near.record_id,
                "of": near.of,
                "similarity": Decimal(f"{near.similarity:.4f}"),
            }
            for near in tally.near_duplicates
        ],
        "quarantine_uri": quarantine_uri,
    }


def read_options(
    manifest: DropManifest, settings: IngestSettings = DEFAULT_SETTINGS
) -> ReadOptions:
    return ReadOptions(
        format=manifest.format,
        field_mapping=manifest.field_mapping,
        max_line_bytes=settings.max_line_bytes,
    )


def _account_for_object(
    obj: DropObject,
    manifest: DropManifest,
    tables: IngestTables,
    settings: IngestSettings,
    options: ReadOptions,
    byte_range: tuple[int, int | None],
    on_chunk: Callable[[FileOutcome], None],
) -> None:
    """Stream the object (or its byte range) through parsing and accounting, chunk by chunk."""
    with ExitStack() as stack:
        stream = _open(obj, options, byte_range, stack)
        parsed = parse_stream(obj.key, stream, options)
        store = DropRecordStore(
            tables.records,
            dataset=obj.dataset,
            source_key=obj.key,
            source=manifest.source or "",
            bodies_bucket=tables.curated_bucket,
            max_in_flight=settings.write_transactions_in_flight,
        )
        tags = (*source_tags(obj, manifest), *manifest.record_tags())

        def new_index() -> DynamoNearDuplicateIndex:
            return DynamoNearDuplicateIndex(
                control_table=tables.control,
                records_table=tables.records,
                dataset=obj.dataset,
                settings=settings.near_duplicates,
            )

        account_in_chunks(
            parsed,
            drop_id=obj.drop_id,
            store=store,
            settings=settings,
            new_index=new_index,
            tags=tags,
            on_chunk=on_chunk,
        )


def _open(
    obj: DropObject, options: ReadOptions, byte_range: tuple[int, int | None], stack: ExitStack
) -> IO[bytes]:
    if format_of(obj.key, options.format) == "parquet":
        # Parquet reads its footer first and then only the row groups it needs.
        return io.BufferedReader(
            objects.RangeFile(obj.bucket, obj.key, obj.size), RANGE_BUFFER_BYTES
        )
    start, end = byte_range
    return stack.enter_context(objects.open_range(obj.bucket, obj.key, start, end))


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


def _locate(obj: DropObject) -> DropObject | None:
    """The object with its etag and size, or None when it is gone."""
    # S3 notifications URL-encode keys; EventBridge is documented not to, but try both.
    for key in dict.fromkeys([obj.key, unquote_plus(obj.key)]):
        found = objects.head(obj.bucket, key)
        if found is None:
            continue
        etag = obj.etag or str(found.get("ETag", "")).strip('"')
        size = int(found.get("ContentLength", obj.size))
        return dataclasses.replace(obj, key=key, etag=etag, size=size)
    return None


def source_tags(obj: DropObject, manifest: DropManifest | None = None) -> tuple[str, ...]:
    """Where a record came from, as tags stored with its features."""
    declared = manifest.format if manifest else None
    extension = declared or data_extension(obj.file_name).lstrip(".") or "none"
    return (f"dataset:{obj.dataset}", f"format:{extension}")


def trigger_after_ingest(
    *,
    control_table: str,
    state_machine_arn: str,
    threshold: int,
    model_lines: ModelLines | None = None,
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
            model_lines=model_lines.names if model_lines else (),
        )
    except ClientError as exc:
        return {"started": False, "reason": f"retrain trigger failed, the schedule retries: {exc}"}
    return outcome.as_dict()
