"""Data drop ingestion: parse, validate, normalize, dedup, store, quarantine, manifest."""

from tuneloop.ingest.events import DropObject, InvalidDropEventError, parse_drop_event
from tuneloop.ingest.service import DropResult, IngestTables, ingest_drop, trigger_after_ingest

__all__ = [
    "DropObject",
    "DropResult",
    "IngestTables",
    "InvalidDropEventError",
    "ingest_drop",
    "parse_drop_event",
    "trigger_after_ingest",
]
