"""Read a table incrementally: rows after (watermark, key), in that order, a page at a time.

::

    SELECT "key", "watermark", <mapped columns> FROM "schema"."table"
    WHERE "watermark" > :wm OR ("watermark" = :wm AND "key" > :key)
    ORDER BY "watermark", "key" LIMIT :limit

The key column breaks ties: rows sharing one watermark value that a page boundary (or a
run) split are neither skipped nor pulled twice. Rows whose watermark is NULL are never
pulled. PostgreSQL goes through pg8000 (pure Python, shipped as a Lambda layer), SQLite
through the standard library; both accept the same named parameters.
"""

from __future__ import annotations

import sqlite3
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from tuneloop.connectors.records import map_fields
from tuneloop.connectors.secrets import DatabaseCredentials
from tuneloop.connectors.settings import SqlSettings
from tuneloop.connectors.watermark import Position


class SqlConnectorError(RuntimeError):
    """The database refused the connection or the query; the message names the connector."""


def _quote(identifier: str) -> str:
    # Identifiers are validated in SqlSettings; quoting keeps reserved words and case.
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class Query:
    text: str
    parameters: dict[str, Any]


def selected_columns(settings: SqlSettings) -> list[str]:
    columns = [settings.key_column, settings.watermark_column]
    for column in settings.fields.values():
        if column not in columns:
            columns.append(column)
    return columns


def build_query(settings: SqlSettings, after: Position | None, limit: int) -> Query:
    table = _quote(settings.table)
    if settings.schema:
        table = f"{_quote(settings.schema)}.{table}"
    wm, key = _quote(settings.watermark_column), _quote(settings.key_column)
    text = f"SELECT {', '.join(_quote(c) for c in selected_columns(settings))} FROM {table}"
    parameters: dict[str, Any] = {"limit": limit}
    if after is None:
        text += f" WHERE {wm} IS NOT NULL"
    else:
        text += f" WHERE {wm} > :wm OR ({wm} = :wm AND {key} > :key)"
        parameters.update(wm=after.watermark, key=after.key)
    text += f" ORDER BY {wm}, {key} LIMIT :limit"
    return Query(text, parameters)


@dataclass(frozen=True)
class Row:
    watermark: Any
    key: Any
    record: dict[str, Any]


class Database(Protocol):
    def fetch(self, query: Query) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...


class SqliteDatabase:
    def __init__(self, path: str) -> None:
        # Read-only: a connector never writes to the source.
        self._connection = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True)

    def fetch(self, query: Query) -> list[tuple[Any, ...]]:
        return list(self._connection.execute(query.text, query.parameters).fetchall())

    def close(self) -> None:
        self._connection.close()


def _ssl_context(mode: str) -> ssl.SSLContext | None:
    if mode == "disable":
        return None
    context = ssl.create_default_context()
    if mode == "require":  # encrypted, server certificate not verified (libpq's "require")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class PostgresDatabase:
    def __init__(self, settings: SqlSettings, credentials: DatabaseCredentials) -> None:
        import pg8000.native  # the connector layer on AWS; the `connectors` extra locally

        self._connection = pg8000.native.Connection(
            user=credentials.username or settings.user,
            password=credentials.password,
            host=settings.host or credentials.host,
            port=settings.port or credentials.port or 5432,
            database=settings.database or credentials.dbname,
            ssl_context=_ssl_context(settings.sslmode),
            timeout=60,
            application_name="tuneloop-connector",
        )

    def fetch(self, query: Query) -> list[tuple[Any, ...]]:
        rows = self._connection.run(query.text, **query.parameters)
        return [tuple(row) for row in rows or []]

    def close(self) -> None:
        self._connection.close()


def open_database(settings: SqlSettings, credentials: DatabaseCredentials | None) -> Database:
    try:
        if settings.engine == "sqlite":
            return SqliteDatabase(settings.database)
        if credentials is None:
            raise SqlConnectorError("PostgreSQL needs credentials (secret_arn)")
        return PostgresDatabase(settings, credentials)
    except (sqlite3.Error, OSError) as exc:
        raise SqlConnectorError(f"cannot open {settings.engine} database: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("pg8000"):
            raise SqlConnectorError(f"cannot connect to PostgreSQL: {_pg_message(exc)}") from exc
        raise


def _pg_message(exc: Exception) -> str:
    # pg8000 errors carry the server's fields as a dict: show its message, not a repr.
    detail = exc.args[0] if exc.args else exc
    if isinstance(detail, dict):
        return f"{detail.get('C', '')} {detail.get('M', detail)}".strip()
    return str(detail)


@dataclass
class ReadProgress:
    exhausted: bool = False
    """No rows are left after the last one read (not stopped by a limit or the clock)."""


def read_rows(
    database: Database,
    settings: SqlSettings,
    after: Position | None,
    max_rows: int,
    *,
    progress: ReadProgress | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> Iterator[Row]:
    """Rows after ``after`` in (watermark, key) order, paging until exhausted, ``max_rows``,
    or ``keep_going()`` turning false (checked between pages; the first page is always read)."""
    columns = selected_columns(settings)
    position, pulled = after, 0
    progress = progress or ReadProgress()
    while pulled < max_rows and (pulled == 0 or keep_going()):
        limit = min(settings.page_size, max_rows - pulled)
        query = build_query(settings, position, limit)
        try:
            page = database.fetch(query)
        except sqlite3.Error as exc:
            raise SqlConnectorError(f"query on {settings.table!r} failed: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("pg8000"):
                message = _pg_message(exc)
                raise SqlConnectorError(f"query on {settings.table!r} failed: {message}") from exc
            raise
        for values in page:
            row = dict(zip(columns, values, strict=True))
            yield Row(
                watermark=row[settings.watermark_column],
                key=row[settings.key_column],
                record=map_fields(row, settings.fields),
            )
        pulled += len(page)
        if len(page) < limit:
            progress.exhausted = True
            return
        last = page[-1]
        position = Position(last[1], last[0])
