"""One connector run: take the lease, pull, write drops, advance the watermark, record.

SQL rows arrive in watermark order, so the watermark advances after each object is written
(a run cut short by the Lambda timeout keeps what it wrote) and ``max_rows_per_run`` can
stop a run anywhere. HTTP records arrive in the API's order, so the watermark advances
once, after every object of the run is written, and a run reads every page.
Either way it never moves before the data it covers is in the raw bucket.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tuneloop.connectors.drops import DropWriter
from tuneloop.connectors.http import HttpClient, HttpConnectorError, iter_pages
from tuneloop.connectors.records import get_path, is_missing, lookup, map_fields
from tuneloop.connectors.secrets import database_credentials, read_secret, secret_field
from tuneloop.connectors.settings import ConnectorSettings, HttpSettings, SqlSettings
from tuneloop.connectors.sql import ReadProgress, open_database, read_rows
from tuneloop.connectors.state import ConnectorState, StateStore
from tuneloop.connectors.watermark import Position

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    connector: str
    run_id: str
    rows: int = 0
    objects: list[str] = field(default_factory=list)
    watermark: Any = None
    retries: int = 0
    complete: bool = True
    """False when a SQL run stopped at ``max_rows_per_run`` or the deadline: rows remain."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "run_id": self.run_id,
            "rows": self.rows,
            "objects": list(self.objects),
            "watermark": None if self.watermark is None else str(self.watermark),
            "retries": self.retries,
            "complete": self.complete,
        }


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run_connector(
    settings: ConnectorSettings,
    *,
    raw_bucket: str,
    control_table: str,
    lease_seconds: int = 900,
    now: dt.datetime | None = None,
    http_client: HttpClient | None = None,
    deadline: float | None = None,
) -> RunResult:
    """Pull what is new since the stored watermark; raises after recording any failure.

    ``deadline`` (a ``time.monotonic()`` value): a SQL run stops between pages once it has
    passed, keeping what it wrote, so a Lambda ends cleanly before its timeout.
    """
    started = now or _utcnow()
    run_id = uuid.uuid4().hex
    store = StateStore(control_table, settings.name)
    state = store.acquire(run_id, now=started, lease_seconds=lease_seconds)
    result = RunResult(settings.name, run_id)
    writer = DropWriter(raw_bucket, settings, started)
    try:
        if settings.sql is not None:
            _run_sql(settings, settings.sql, state, store, writer, result, deadline)
        elif settings.http is not None:
            _run_http(settings, settings.http, state, store, writer, result, http_client)
    except Exception as exc:
        store.finish(
            run_id,
            now=_utcnow(),
            status="failed",
            rows=result.rows,
            objects=len(result.objects),
            error=f"{type(exc).__name__}: {exc}",
        )
        raise
    store.finish(run_id, now=_utcnow(), status="ok", rows=result.rows, objects=len(result.objects))
    logger.info(
        "connector %s pulled %d rows into %d objects",
        settings.name,
        result.rows,
        len(result.objects),
    )
    return result


def _run_sql(
    settings: ConnectorSettings,
    sql: SqlSettings,
    state: ConnectorState,
    store: StateStore,
    writer: DropWriter,
    result: RunResult,
    deadline: float | None,
) -> None:
    credentials = database_credentials(settings.secret_arn) if settings.secret_arn else None
    database = open_database(sql, credentials)
    version = state.version
    result.watermark = state.position.watermark if state.position else None
    batch: list[dict[str, Any]] = []
    last: Position | None = None

    def flush() -> None:
        nonlocal version, batch
        if not batch or last is None:
            return
        key = writer.write(batch)
        result.objects.append(key)
        version = store.advance(
            result.run_id, expected_version=version, position=last, rows=len(batch)
        )
        result.rows += len(batch)
        result.watermark = last.watermark
        logger.info("%s: wrote %s; %d rows so far", settings.name, key, result.rows)
        batch = []

    progress = ReadProgress()

    def keep_going() -> bool:
        return deadline is None or time.monotonic() < deadline

    try:
        rows = read_rows(
            database,
            sql,
            state.position,
            settings.max_rows_per_run,
            progress=progress,
            keep_going=keep_going,
        )
        for row in rows:
            batch.append(row.record)
            last = Position(row.watermark, row.key)
            if len(batch) >= settings.rows_per_object:
                flush()
        flush()
    finally:
        database.close()
    result.complete = progress.exhausted


def _run_http(
    settings: ConnectorSettings,
    http: HttpSettings,
    state: ConnectorState,
    store: StateStore,
    writer: DropWriter,
    result: RunResult,
    client: HttpClient | None,
) -> None:
    if client is None:
        auth = ""
        if settings.secret_arn:
            auth = secret_field(
                settings.secret_arn, read_secret(settings.secret_arn), http.secret_field
            )
        client = HttpClient(http, auth)
    stored = state.position.watermark if state.position else None
    seen = set(state.seen_keys)
    newest, newest_keys = stored, set(seen)
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal batch
        if batch:
            key = writer.write(batch)
            result.objects.append(key)
            result.rows += len(batch)
            logger.info("%s: wrote %s; %d records so far", settings.name, key, result.rows)
            batch = []

    try:
        for page_number, page in enumerate(iter_pages(client, stored)):
            for index, item in enumerate(page):
                if not isinstance(item, dict):
                    raise HttpConnectorError(
                        f"page {page_number + 1}, record {index + 1}: expected an object, "
                        f"got {type(item).__name__}"
                    )
                if http.watermark_field:
                    mark = lookup(item, http.watermark_field)
                    if is_missing(mark) or mark is None:
                        raise HttpConnectorError(
                            f"page {page_number + 1}, record {index + 1}: no watermark field "
                            f"{http.watermark_field!r}"
                        )
                    key = str(get_path(item, http.key_field)) if http.key_field else None
                    if not _is_new(mark, key, stored, seen):
                        continue
                    if newest is None or _is_new(mark, None, newest, set()):
                        newest, newest_keys = mark, set()
                    if mark == newest and key is not None:
                        newest_keys.add(key)
                batch.append(map_fields(item, http.fields))
                if len(batch) >= settings.rows_per_object:
                    flush()
        flush()
    finally:
        result.retries = client.retries
    if http.watermark_field and newest is not None and (newest != stored or newest_keys != seen):
        store.advance(
            result.run_id,
            expected_version=state.version,
            position=Position(newest),
            rows=result.rows,
            seen_keys=frozenset(newest_keys),
        )
    result.watermark = newest


def _is_new(mark: Any, key: str | None, stored: Any, seen: set[str]) -> bool:
    """APIs' ``since`` is often inclusive: drop what is older, and ties already pulled."""
    if stored is None:
        return True
    try:
        if mark != stored:
            return bool(mark > stored)
    except TypeError as exc:
        raise HttpConnectorError(
            f"cannot compare watermark {mark!r} with {stored!r}: {exc}"
        ) from exc
    return key is not None and key not in seen
