"""Write pulled records as data drops into the raw bucket (the one ingestion path).

Each object is ``drops/<dataset>/connectors/<name>/<UTC timestamp>-<n>.jsonl``; its drop
manifest ``<key>.manifest.json`` (``{"dataset", "source", "tags"}``, docs/ingestion.md) is
written first, so ingestion never sees the data without it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from tuneloop import aws
from tuneloop.connectors.records import to_jsonl
from tuneloop.connectors.settings import ConnectorSettings

MANIFEST_SUFFIX = ".manifest.json"


def connector_prefix(settings: ConnectorSettings) -> str:
    return f"drops/{settings.dataset}/connectors/{settings.name}/"


def manifest_for(settings: ConnectorSettings) -> dict[str, Any]:
    return {"dataset": settings.dataset, "source": settings.name, "tags": list(settings.tags)}


class DropWriter:
    """Numbers the objects of one run: ``<run timestamp>-0001.jsonl``, ``-0002``, ..."""

    def __init__(self, bucket: str, settings: ConnectorSettings, started: dt.datetime) -> None:
        self.bucket = bucket
        self.settings = settings
        # Microseconds: two runs in one second (a retry right after a failure) must not
        # overwrite each other's objects.
        self.stamp = started.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self.keys: list[str] = []

    def write(self, records: list[dict[str, Any]]) -> str:
        key = f"{connector_prefix(self.settings)}{self.stamp}-{len(self.keys) + 1:04d}.jsonl"
        s3 = aws.s3()
        s3.put_object(
            Bucket=self.bucket,
            Key=key + MANIFEST_SUFFIX,
            Body=json.dumps(manifest_for(self.settings), sort_keys=True).encode(),
            ContentType="application/json",
        )
        s3.put_object(
            Bucket=self.bucket, Key=key, Body=to_jsonl(records), ContentType="application/x-ndjson"
        )
        self.keys.append(key)
        return key
