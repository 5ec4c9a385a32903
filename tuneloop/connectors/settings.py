"""Connector settings: declared in the stage config, validated at synth and on every run.

One schema serves both sides: ``stacks/config.py`` builds :class:`ConnectorSettings` from
the stage config (or the ``connectors`` context value) and fails ``cdk synth`` on a bad
value; the connector Lambda reads the same JSON back from its ``CONNECTOR`` variable.
Every problem names its field, e.g. ``connectors[0].sql.watermark_column``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tuneloop.settings_keys import did_you_mean

Problem = tuple[str, str]
"""(dotted field name, what is wrong)."""

KINDS = ("sql", "http")
ENGINES = ("postgresql", "sqlite")
PAGINATIONS = ("none", "next_link", "cursor", "page")
SSL_MODES = ("require", "verify-full", "disable")

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# A plain or schema-qualified SQL identifier: the only SQL text taken from the config, so
# it is checked here and double-quoted when the query is built (no injection through it).
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\)|at\(.+\))$")
_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"
)
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# The record fields ingestion reads (CANONICAL_FIELDS of tuneloop/ingest/manifest.py);
# anything else belongs under metadata.
_TARGET = re.compile(r"^(text|messages|prompt|completion|metadata(\.[A-Za-z_]\w*)*)$")


class ConnectorConfigError(ValueError):
    """A connector declaration is invalid; the message names every bad field."""


def _positive_int(found: list[Problem], name: str, value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        found.append((name, f"must be > 0, got {value!r}"))


def _matches(
    found: list[Problem], name: str, value: Any, pattern: re.Pattern[str], what: str
) -> None:
    if not (isinstance(value, str) and pattern.match(value)):
        found.append((name, f"must be {what}, got {value!r}"))


def _prefixed(prefix: str, problems: list[Problem]) -> list[Problem]:
    return [(f"{prefix}.{name}", text) for name, text in problems]


def _fields_problems(fields: Mapping[str, str]) -> list[Problem]:
    found: list[Problem] = []
    if not isinstance(fields, Mapping) or not fields:
        return [("fields", f"must map record fields to source columns, got {fields!r}")]
    for target, source in fields.items():
        if not isinstance(target, str) or not _TARGET.match(target):
            found.append(
                (
                    f"fields.{target}",
                    "must be text, messages, prompt, completion or metadata.<name>",
                )
            )
        if not isinstance(source, str) or not source:
            found.append((f"fields.{target}", f"must name a source column/path, got {source!r}"))
    return found


@dataclass(frozen=True, kw_only=True)
class SqlSettings:
    """Incremental pull from one table, ordered by (watermark column, key column)."""

    engine: Literal["postgresql", "sqlite"]
    table: str
    fields: Mapping[str, str]
    """Record field → column; only these columns are selected."""
    watermark_column: str
    key_column: str
    """A unique column (primary key): orders rows that share a watermark value."""
    database: str
    """PostgreSQL: the database name; SQLite: the database file's path."""
    schema: str = ""
    host: str = ""
    port: int = 5432
    user: str = ""
    page_size: int = 1000
    sslmode: Literal["require", "verify-full", "disable"] = "require"
    """PostgreSQL TLS, as libpq: ``require`` encrypts, ``verify-full`` also checks the
    server certificate against the system CAs, ``disable`` is for loopback servers only."""

    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        if self.engine not in ENGINES:
            found.append(("engine", f"must be one of {ENGINES}, got {self.engine!r}"))
        for name in ("table", "watermark_column", "key_column"):
            _matches(found, name, getattr(self, name), _IDENTIFIER, "an SQL identifier")
        if self.schema:
            _matches(found, "schema", self.schema, _IDENTIFIER, "an SQL identifier")
        found += _fields_problems(self.fields)
        if isinstance(self.fields, Mapping):
            for target, column in self.fields.items():
                _matches(found, f"fields.{target}", column, _IDENTIFIER, "an SQL column name")
        if not isinstance(self.database, str) or not self.database:
            found.append(("database", f"must name the database, got {self.database!r}"))
        if self.engine == "postgresql":
            if not isinstance(self.host, str) or not self.host:
                found.append(("host", "is required for engine 'postgresql'"))
            if self.sslmode not in SSL_MODES:
                found.append(("sslmode", f"must be one of {SSL_MODES}, got {self.sslmode!r}"))
            if not (isinstance(self.port, int) and 0 < self.port < 65536):
                found.append(("port", f"must be a TCP port, got {self.port!r}"))
        _positive_int(found, "page_size", self.page_size)
        return found


@dataclass(frozen=True, kw_only=True)
class HttpSettings:
    """A paginated JSON API."""

    url: str
    records_path: str = ""
    """Dotted path to the records array in each response ("" = the body is the array)."""
    fields: Mapping[str, str] = field(default_factory=dict)
    """Record field → dotted path in an API record; empty = the API record as it is."""
    pagination: Literal["none", "next_link", "cursor", "page"] = "none"
    next_path: str = "next"
    """next_link: dotted path to the next page's URL (absent/null = last page)."""
    cursor_path: str = "next_cursor"
    """cursor: dotted path to the next cursor in the response."""
    cursor_param: str = "cursor"
    page_param: str = "page"
    first_page: int = 1
    page_size_param: str = ""
    page_size: int = 100
    params: Mapping[str, str] = field(default_factory=dict)
    watermark_field: str = ""
    """Dotted path in an API record; the connector keeps the largest value it has seen."""
    since_param: str = ""
    """Query parameter that asks the API for records at or after the watermark."""
    key_field: str = ""
    """Dotted path to a unique id: records at exactly the watermark are not pulled twice."""
    auth_header: str = "Authorization"
    auth_prefix: str = ""
    """Put before the secret value, e.g. ``"Bearer "``."""
    secret_field: str = ""
    """The secret is JSON and the header value is this field ("" = the whole string)."""
    timeout_seconds: int = 30
    max_retries: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    max_pages: int = 10_000

    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        if not isinstance(self.url, str) or not re.match(r"^https?://[^\s/]+", self.url):
            found.append(("url", f"must be an http(s) URL, got {self.url!r}"))
        elif self.url.startswith("http://") and not re.match(
            r"^http://(localhost|127\.0\.0\.1|\[::1\])[:/]", self.url
        ):
            found.append(("url", "must use https (plain http only on loopback)"))
        if self.pagination not in PAGINATIONS:
            found.append(("pagination", f"must be one of {PAGINATIONS}, got {self.pagination!r}"))
        if self.fields:
            found += _fields_problems(self.fields)
        _matches(found, "auth_header", self.auth_header, _HEADER, "an HTTP header name")
        for name in ("timeout_seconds", "page_size", "max_pages"):
            _positive_int(found, name, getattr(self, name))
        if not (isinstance(self.max_retries, int) and 0 <= self.max_retries <= 20):
            found.append(("max_retries", f"must be in [0, 20], got {self.max_retries!r}"))
        for name in ("backoff_seconds", "max_backoff_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value <= 900):
                found.append((name, f"must be in [0, 900] seconds, got {value!r}"))
        if self.since_param and not self.watermark_field:
            found.append(("since_param", "needs watermark_field (the value sent as since)"))
        if self.key_field and not self.watermark_field:
            found.append(("key_field", "is only used with watermark_field"))
        return found


@dataclass(frozen=True, kw_only=True)
class ConnectorSettings:
    """One scheduled pull: where from, into which dataset, how often."""

    name: str
    kind: Literal["sql", "http"]
    schedule: str
    """EventBridge Scheduler expression: ``rate(1 hour)``, ``cron(0 3 * * ? *)``."""
    dataset: str
    tags: tuple[str, ...] = ()
    secret_arn: str = ""
    """Secrets Manager secret (complete ARN): SQL password / HTTP auth header value."""
    rows_per_object: int = 10_000
    max_rows_per_run: int = 1_000_000
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    sql: SqlSettings | None = None
    http: HttpSettings | None = None

    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        _matches(found, "name", self.name, _NAME, "1-40 lower-case letters, digits or '-'")
        if self.kind not in KINDS:
            found.append(("kind", f"must be one of {KINDS}, got {self.kind!r}"))
        _matches(found, "schedule", self.schedule, _SCHEDULE, "rate(...), cron(...) or at(...)")
        _matches(found, "dataset", self.dataset, _DATASET, "a dataset name")
        if not isinstance(self.tags, tuple) or not all(isinstance(t, str) and t for t in self.tags):
            found.append(("tags", f"must be a list of non-empty strings, got {self.tags!r}"))
        if self.secret_arn:
            _matches(found, "secret_arn", self.secret_arn, _SECRET_ARN, "a complete secret ARN")
        for name in ("rows_per_object", "max_rows_per_run"):
            _positive_int(found, name, getattr(self, name))
        for value in self.subnet_ids:
            _matches(found, "subnet_ids", value, _SUBNET, "subnet ids")
        for value in self.security_group_ids:
            _matches(found, "security_group_ids", value, _SECURITY_GROUP, "security group ids")
        if bool(self.subnet_ids) != bool(self.security_group_ids):
            found.append(("subnet_ids", "and security_group_ids must be given together"))
        if self.kind == "sql":
            if self.sql is None:
                found.append(("sql", "is required for kind 'sql'"))
            else:
                found += _prefixed("sql", self.sql.problems())
                if self.sql.engine == "postgresql" and not self.secret_arn:
                    found.append(("secret_arn", "is required for engine 'postgresql'"))
        if self.kind == "http":
            if self.http is None:
                found.append(("http", "is required for kind 'http'"))
            else:
                found += _prefixed("http", self.http.problems())
        if self.kind == "sql" and self.http is not None:
            found.append(("http", "is only for kind 'http'"))
        if self.kind == "http" and self.sql is not None:
            found.append(("sql", "is only for kind 'sql'"))
        return found

    @property
    def state_key(self) -> str:
        """The connector's item in the Control table."""
        return f"connector#{self.name}"

    @property
    def uses_postgresql(self) -> bool:
        return self.sql is not None and self.sql.engine == "postgresql"

    def to_json(self) -> str:
        return json.dumps(_as_plain(self), sort_keys=True, separators=(",", ":"))


def _as_plain(settings: ConnectorSettings) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name, value in vars(settings).items():
        if name in ("sql", "http"):
            if value is not None:
                body[name] = {
                    k: dict(v) if isinstance(v, Mapping) else v for k, v in vars(value).items()
                }
        elif isinstance(value, tuple):
            body[name] = list(value)
        else:
            body[name] = value
    return body


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConnectorConfigError(f"{where} must be an object, got {raw!r}")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConnectorConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}{did_you_mean(unknown[0], known)}; "
            f"known: {', '.join(sorted(known))}"
        )
    values = {k: tuple(v) if isinstance(v, list) and k != "fields" else v for k, v in raw.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        missing = sorted(
            name
            for name, spec in cls.__dataclass_fields__.items()
            if name not in raw and spec.default is spec.default_factory  # both MISSING
        )
        raise ConnectorConfigError(f"{where}: missing field(s) {', '.join(missing)}") from exc


def connector_from_dict(raw: Any, where: str = "connector") -> ConnectorSettings:
    """Build and validate one connector; errors name ``<where>.<field>``."""
    if not isinstance(raw, Mapping):
        raise ConnectorConfigError(f"{where} must be an object, got {raw!r}")
    body = dict(raw)
    if "sql" in body:
        body["sql"] = _build(SqlSettings, body["sql"], f"{where}.sql")
    if "http" in body:
        body["http"] = _build(HttpSettings, body["http"], f"{where}.http")
    settings: ConnectorSettings = _build(ConnectorSettings, body, where)
    problems = settings.problems()
    if problems:
        raise ConnectorConfigError("; ".join(f"{where}.{name} {text}" for name, text in problems))
    return settings


def parse_connectors(raw: Any) -> tuple[ConnectorSettings, ...]:
    """A list of connector objects, or its JSON text (a ``-c connectors=...`` value)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConnectorConfigError(f"connectors: invalid JSON: {exc}") from exc
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ConnectorConfigError(f"connectors must be a list of objects, got {raw!r}")
    connectors = tuple(
        raw_item
        if isinstance(raw_item, ConnectorSettings)
        else connector_from_dict(raw_item, f"connectors[{i}]")
        for i, raw_item in enumerate(raw)
    )
    return connectors


def duplicate_name_problems(connectors: Sequence[ConnectorSettings]) -> list[Problem]:
    seen: set[str] = set()
    found: list[Problem] = []
    for index, connector in enumerate(connectors):
        if connector.name in seen:
            found.append((f"connectors[{index}].name", f"{connector.name!r} is used twice"))
        seen.add(connector.name)
    return found
