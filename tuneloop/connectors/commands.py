"""``tuneloop connectors status|run``: what the connectors last did; run one by hand.

The Control table and raw bucket come from ``--table``/``--bucket`` or the environment
variables ``TUNELOOP_CONTROL_TABLE`` and ``TUNELOOP_RAW_BUCKET``; AWS credentials, region
and ``AWS_ENDPOINT_URL`` are boto3's usual ones.

    tuneloop connectors status
    tuneloop connectors run tickets-db --file connectors.json   # the stage config's list
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.connectors.http import HttpConnectorError
from tuneloop.connectors.runner import run_connector
from tuneloop.connectors.settings import ConnectorConfigError, parse_connectors
from tuneloop.connectors.sql import SqlConnectorError
from tuneloop.connectors.state import ConnectorBusyError, WatermarkConflictError
from tuneloop.connectors.watermark import decode_value

TABLE_ENV = "TUNELOOP_CONTROL_TABLE"
BUCKET_ENV = "TUNELOOP_RAW_BUCKET"
STATE_PREFIX = "connector#"
_RUN_ERRORS = (
    ConnectorConfigError,
    ConnectorBusyError,
    WatermarkConflictError,
    HttpConnectorError,
    SqlConnectorError,
    OSError,
)


class CommandError(RuntimeError):
    """Missing configuration: ``error: ...`` and exit code 2."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "connectors",
        help="pull connectors: their state, or a run by hand",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="connectors_command", required=True)
    status = sub.add_parser("status", help="each connector's watermark and last run")
    status.add_argument("--table", help=f"Control table name (default: ${TABLE_ENV})")
    status.set_defaults(func=run_command, action=_status)
    run = sub.add_parser("run", help="run one connector now, as its schedule would")
    run.add_argument("name", help="the connector's name")
    run.add_argument("--file", type=Path, required=True, help="JSON list of connector declarations")
    run.add_argument("--table", help=f"Control table name (default: ${TABLE_ENV})")
    run.add_argument("--bucket", help=f"raw bucket name (default: ${BUCKET_ENV})")
    run.set_defaults(func=run_command, action=_run)


def run_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        return int(args.action(args, out or sys.stdout))
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _RUN_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(f"error: {error.get('Code', 'AWS')}: {error.get('Message', exc)}", file=sys.stderr)
        return 1


def _setting(value: str | None, flag: str, env: str, what: str) -> str:
    value = value or os.environ.get(env)
    if not value:
        raise CommandError(f"say which {what}: --{flag} or ${env}")
    return value


def connector_states(table: str) -> list[dict[str, Any]]:
    """Every ``connector#<name>`` item of the Control table, by name."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "FilterExpression": "begins_with(#k, :prefix)",
        "ExpressionAttributeNames": {"#k": "key"},
        "ExpressionAttributeValues": {":prefix": STATE_PREFIX},
    }
    while True:
        page = aws.table(table).scan(**kwargs)
        items += [dict(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=lambda item: str(item["key"]))


def _watermark(item: dict[str, Any]) -> str:
    if "watermark" not in item:
        return "-"
    text = str(decode_value(item["watermark"]))
    if "watermark_key" in item:
        text += f" (key {decode_value(item['watermark_key'])})"
    return text


def _status(args: argparse.Namespace, out: TextIO) -> int:
    table = _setting(args.table, "table", TABLE_ENV, "Control table to read")
    items = connector_states(table)
    if not items:
        print("no connector has run yet", file=out)
        return 0
    for item in items:
        name = str(item["key"]).removeprefix(STATE_PREFIX)
        running = f", running until {item['lease_until']}" if item.get("lease_until") else ""
        print(
            f"{name}: {item.get('last_status', 'never finished')} at "
            f"{item.get('last_run_at', '-')}{running}; last run {int(item.get('rows_pulled', 0))} "
            f"rows in {int(item.get('objects_written', 0))} objects, "
            f"{int(item.get('total_rows', 0))} in all; watermark {_watermark(item)}",
            file=out,
        )
        if item.get("last_error"):
            print(f"  last error: {item['last_error']}", file=out)
    return 0


def _run(args: argparse.Namespace, out: TextIO) -> int:
    table = _setting(args.table, "table", TABLE_ENV, "Control table to use")
    bucket = _setting(args.bucket, "bucket", BUCKET_ENV, "raw bucket to write to")
    try:
        declared = parse_connectors(json.loads(args.file.read_text()))
    except json.JSONDecodeError as exc:
        raise ConnectorConfigError(f"{args.file}: invalid JSON: {exc}") from None
    chosen = [c for c in declared if c.name == args.name]
    if not chosen:
        names = ", ".join(c.name for c in declared) or "none"
        raise CommandError(f"{args.file} declares no connector {args.name!r} (it has: {names})")
    result = run_connector(chosen[0], raw_bucket=bucket, control_table=table)
    for key in result.objects:
        print(f"s3://{bucket}/{key}", file=out)
    print(
        f"{result.connector}: {result.rows} rows in {len(result.objects)} objects; "
        f"watermark {result.watermark}",
        file=sys.stderr,
    )
    return 0
