"""The curated bucket's share of ingestion: record bodies too large for a DynamoDB item,
and the curated copy of each drop's stored records.

- ``records/<dataset>/<record_id>.json``: the training line (``{"text"}`` or
  ``{"messages"}``) of a record whose item would exceed DynamoDB's 400 KB; the item holds
  ``body_s3_uri`` instead of ``text``/``messages``.
- ``curated/<dataset>/<drop_id>/part-<n:05d>.jsonl``: the records a drop stored, one JSON
  line each (``record_id``, ``line``, ``source_key``, the training fields, ``metadata``,
  ``tags``); a segmented drop has one part per segment that stored records. Written before
  the drop is marked complete, so a complete drop that stored records always has its copy
  (one that stored none has no object); rewriting it is harmless.
"""

from __future__ import annotations

import json
import tempfile
from types import TracebackType
from typing import Any

from tuneloop import aws
from tuneloop.ingest.model import Candidate

RECORDS_PREFIX = "records/"
CURATED_PREFIX = "curated/"
SPOOL_BYTES = 8 * 1024 * 1024


def body_key(dataset: str, record_id: str) -> str:
    return f"{RECORDS_PREFIX}{dataset}/{record_id}.json"


def curated_key(dataset: str, drop_id: str, part: int = 0) -> str:
    return f"{CURATED_PREFIX}{dataset}/{drop_id}/part-{part:05d}.jsonl"


def put_body(bucket: str, dataset: str, candidate: Candidate) -> str:
    """Store a record's training line in S3; its ``s3://`` URI."""
    key = body_key(dataset, candidate.record_id)
    body = json.dumps(candidate.content.training_line(), ensure_ascii=False).encode("utf-8")
    aws.s3().put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return f"s3://{bucket}/{key}"


def read_body(uri: str) -> dict[str, Any]:
    """The training line stored at ``body_s3_uri``."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    value: dict[str, Any] = json.loads(body)
    return value


class CuratedWriter:
    """The curated copy of one drop (or segment), spooled and uploaded once."""

    def __init__(self, bucket: str, key: str, source_key: str) -> None:
        self.bucket = bucket
        self.key = key
        self.source_key = source_key
        self.count = 0
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115

    def __enter__(self) -> CuratedWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._spool.close()

    def write(self, candidates: list[Candidate]) -> None:
        for candidate in candidates:
            line: dict[str, Any] = {
                "record_id": candidate.record_id,
                "line": candidate.line,
                "source_key": self.source_key,
                **candidate.content.training_line(),
            }
            if candidate.metadata:
                line["metadata"] = candidate.metadata
            if candidate.features.get("tags"):
                line["tags"] = candidate.features["tags"]
            self._spool.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
            self.count += 1

    def upload(self) -> str:
        """Put the copy; its URI, or ``""`` when nothing was stored (no empty object: a
        reader of ``curated/`` finds only drops that added records)."""
        if not self.count:
            return ""
        self._spool.seek(0)
        aws.s3().upload_fileobj(
            self._spool, self.bucket, self.key, ExtraArgs={"ContentType": "application/x-ndjson"}
        )
        return f"s3://{self.bucket}/{self.key}"
