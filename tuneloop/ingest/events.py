"""Read the S3 object a queued EventBridge "Object Created" event refers to."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

DROPS_PREFIX = "drops/"
DEFAULT_DATASET = "default"
# A dataset name becomes part of S3 keys (curated/<dataset>/, records/<dataset>/) and of
# DynamoDB keys (near_dup#<dataset>#...): ASCII letters, digits, '.', '_' and '-', starting
# with a letter or digit, no '..', at most MAX_DATASET_CHARS characters.
MAX_DATASET_CHARS = 64
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def dataset_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a dataset, or None when it can."""
    if len(name) > MAX_DATASET_CHARS:
        shown = name[:MAX_DATASET_CHARS]
        return f"dataset name {shown!r}... is {len(name)} characters; at most {MAX_DATASET_CHARS}"
    if not _DATASET_NAME.fullmatch(name) or ".." in name:
        return (
            f"dataset name {name!r} is not allowed: use ASCII letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, without '..' or path separators"
        )
    return None


class InvalidDropEventError(ValueError):
    """The message is not an S3 "Object Created" event; it goes to the DLQ after retries."""


@dataclass(frozen=True)
class DropObject:
    bucket: str
    key: str
    etag: str
    size: int

    @property
    def drop_id(self) -> str:
        return hashlib.sha256(f"{self.bucket}/{self.key}/{self.etag}".encode()).hexdigest()

    @property
    def is_drop(self) -> bool:
        # The raw bucket also holds quarantine/: only drops/ are ingested (no feedback loop).
        return self.key.startswith(DROPS_PREFIX) and not self.key.endswith("/")

    @property
    def dataset(self) -> str:
        """``drops/<dataset>/<file>``; files directly under ``drops/`` are ``default``."""
        parts = self.key.removeprefix(DROPS_PREFIX).split("/")
        return parts[0] if len(parts) > 1 and parts[0] else DEFAULT_DATASET

    @property
    def file_name(self) -> str:
        return posixpath.basename(self.key)


def parse_drop_event(body: str) -> DropObject:
    """The object of an EventBridge S3 event (the SQS message body)."""
    try:
        event: Any = json.loads(body)
        detail = event["detail"]
        obj = detail["object"]
        bucket = detail["bucket"]["name"]
        key = obj["key"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvalidDropEventError(
            f"expected an EventBridge S3 'Object Created' event with detail.bucket.name and "
            f"detail.object.key; could not read {exc} from: {body[:300]}"
        ) from exc
    if event.get("detail-type", "Object Created") != "Object Created":
        raise InvalidDropEventError(f"unexpected detail-type {event.get('detail-type')!r}")
    # S3 spells it "etag", moto's EventBridge integration "eTag".
    etag = str(obj.get("etag") or obj.get("eTag") or "").strip('"')
    return DropObject(bucket=str(bucket), key=str(key), etag=etag, size=int(obj.get("size", 0)))
