"""Credentials from Secrets Manager. Values are returned, never logged or put in errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tuneloop import aws


class SecretError(ValueError):
    """The secret is missing a field the connector needs (the message holds no value)."""


def read_secret(arn: str) -> str:
    response = aws.client("secretsmanager").get_secret_value(SecretId=arn)
    return str(response["SecretString"])


def secret_field(arn: str, secret: str, field: str) -> str:
    """``field`` of a JSON secret; ``""`` means the whole string."""
    if not field:
        return secret
    try:
        body: Any = json.loads(secret)
    except json.JSONDecodeError:
        raise SecretError(f"secret {arn} is not JSON, but secret_field {field!r} is set") from None
    if not isinstance(body, dict) or not isinstance(body.get(field), str):
        raise SecretError(f"secret {arn} has no string field {field!r}")
    return str(body[field])


@dataclass(frozen=True)
class DatabaseCredentials:
    """The RDS secret format: ``{"username", "password", "host"?, "port"?, "dbname"?}``;
    a plain-text secret is the password alone."""

    password: str
    username: str = ""
    host: str = ""
    port: int | None = None
    dbname: str = ""

    def __repr__(self) -> str:  # keep the password out of tracebacks and logs
        return f"DatabaseCredentials(username={self.username!r}, host={self.host!r})"


def database_credentials(arn: str) -> DatabaseCredentials:
    secret = read_secret(arn)
    try:
        body: Any = json.loads(secret)
    except json.JSONDecodeError:
        return DatabaseCredentials(password=secret)
    if not isinstance(body, dict) or not isinstance(body.get("password"), str):
        raise SecretError(f"secret {arn} is JSON without a string 'password' field")
    port = body.get("port")
    return DatabaseCredentials(
        password=body["password"],
        username=str(body.get("username") or ""),
        host=str(body.get("host") or ""),
        port=int(port) if port not in (None, "") else None,
        dbname=str(body.get("dbname") or ""),
    )
