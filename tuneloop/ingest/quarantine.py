"""The quarantine file of a drop: one JSON line per rejection, redacted, spooled to a
temporary file (memory, then disk) and uploaded once at the end."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from types import TracebackType

from tuneloop import aws
from tuneloop.ingest.model import MAX_RAW_CHARS, Rejection, kept_raw
from tuneloop.ingest.redaction import Redactor, redact

QUARANTINE_PREFIX = "quarantine/"
SPOOL_BYTES = 8 * 1024 * 1024


def quarantine_key(drop_id: str, file_name: str) -> str:
    return f"{QUARANTINE_PREFIX}{drop_id}/{file_name}.jsonl"


class QuarantineWriter:
    def __init__(
        self,
        bucket: str,
        key: str,
        redactors: Iterable[Redactor],
        *,
        excerpt_chars: int = MAX_RAW_CHARS,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.redactors = list(redactors)
        self.excerpt_chars = excerpt_chars
        self.count = 0
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._spool.close()

    def write(self, rejections: Iterable[Rejection]) -> None:
        for rejection in rejections:
            entry = rejection.to_json()
            # Rejected lines are redacted too: the quarantine must not become a store of
            # personal data. Redacted before the excerpt is cut, so nothing straddling
            # the cut escapes a pattern (kept_raw keeps a margin beyond the excerpt).
            raw = redact(kept_raw(rejection.raw), self.redactors).text
            entry["raw"] = raw[: self.excerpt_chars]
            entry["message"] = redact(entry["message"], self.redactors).text
            self._spool.write((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
            self.count += 1

    def upload(self) -> str:
        """Put the file (when anything was written); its ``s3://`` URI or ``""``."""
        if not self.count:
            return ""
        self._spool.seek(0)
        aws.s3().upload_fileobj(
            self._spool,
            self.bucket,
            self.key,
            ExtraArgs={"ContentType": "application/x-ndjson"},
        )
        return f"s3://{self.bucket}/{self.key}"
