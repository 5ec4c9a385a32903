"""One record's unexpected failure quarantines that record, never its file.

Every per-record stage (parsing a line, validation, redaction, quality filters) runs under
this guard: an exception nobody anticipated becomes a ``processing_error`` rejection of
that record, and a log line naming the file, the line, the stage and where in the code it
was raised. Neither says what the exception said: its message may quote the record.
"""

from __future__ import annotations

import logging
import posixpath
import traceback

from tuneloop.ingest.model import LINE, Rejection, reject

logger = logging.getLogger(__name__)

PROCESSING_ERROR = "processing_error"


def unexpected(
    file: str, line: int, stage: str, exc: BaseException, raw: str, *, unit: str = LINE
) -> Rejection:
    """The rejection of a record whose ``stage`` raised ``exc``; logs it without the text."""
    where = _raised_at(exc)
    logger.error(
        "record quarantined after an unexpected error",
        extra={
            "file": file,
            "line": line,
            "stage": stage,
            "error": type(exc).__name__,
            "at": where,
        },
    )
    detail = (
        f"unexpected {type(exc).__name__} in {stage} (at {where}); the record was quarantined, "
        "the rest of the file was read"
    )
    return reject(file, line, PROCESSING_ERROR, detail, raw, unit=unit)


def _raised_at(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{posixpath.basename(last.filename)}:{last.lineno} {last.name}"
