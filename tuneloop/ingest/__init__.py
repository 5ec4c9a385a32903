"""Data drop ingestion: parse, validate, normalize, redact, filter, dedup (exact and near),
store, quarantine, manifest. Decisions: docs/ingestion.md."""

from tuneloop.ingest.events import DropObject, InvalidDropEventError, parse_drop_event
from tuneloop.ingest.service import (
    DropResult,
    IngestTables,
    ingest_drop,
    ingest_message,
    trigger_after_ingest,
)
from tuneloop.ingest.settings import DEFAULT_SETTINGS, IngestSettings

__all__ = [
    "DEFAULT_SETTINGS",
    "DropObject",
    "DropResult",
    "IngestSettings",
    "IngestTables",
    "InvalidDropEventError",
    "ingest_drop",
    "ingest_message",
    "parse_drop_event",
    "trigger_after_ingest",
]
