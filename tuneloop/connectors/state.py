"""A connector's state in the Control table (item ``connector#<name>``).

Fields: ``watermark`` / ``watermark_key`` (``{"type", "value"}``), ``seen_keys`` (HTTP:
keys of the records at exactly the watermark), ``version`` (N, +1 per advance),
``lease_id`` / ``lease_until`` (the run in progress), ``last_run_at``, ``last_status``
(``ok``/``failed``), ``last_error``, ``rows_pulled`` and ``objects_written`` (last run),
``total_rows``.

Two runs must not pull the same rows: a run first takes a lease (conditional on no
unexpired lease), and every advance is conditional on the lease *and* the version it read,
so a run whose lease expired and was taken over can neither move the watermark backwards
nor advance it over rows another run already pulled; it fails with an error instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.connectors.watermark import Position, decode_value, encode_value


class ConnectorBusyError(RuntimeError):
    """Another run of the connector holds the lease; this run pulled nothing."""


class WatermarkConflictError(RuntimeError):
    """The watermark changed under this run (its lease expired and another run advanced)."""


@dataclass(frozen=True)
class ConnectorState:
    name: str
    version: int
    position: Position | None
    seen_keys: frozenset[str]
    item: dict[str, Any]


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _position(item: dict[str, Any]) -> Position | None:
    if "watermark" not in item:
        return None
    key = decode_value(item["watermark_key"]) if "watermark_key" in item else None
    return Position(decode_value(item["watermark"]), key)


class StateStore:
    """Reads and conditionally updates one connector's Control item."""

    def __init__(self, control_table: str, name: str) -> None:
        self._table = control_table
        self.name = name
        self.key = {"key": f"connector#{name}"}

    def read(self) -> dict[str, Any]:
        item = aws.table(self._table).get_item(Key=self.key, ConsistentRead=True).get("Item")
        return dict(item or {})

    def acquire(self, run_id: str, *, now: dt.datetime, lease_seconds: int) -> ConnectorState:
        until = now + dt.timedelta(seconds=lease_seconds)
        try:
            response = aws.table(self._table).update_item(
                Key=self.key,
                UpdateExpression=(
                    "SET lease_id = :run, lease_until = :until, "
                    "version = if_not_exists(version, :zero)"
                ),
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now",
                ExpressionAttributeValues={
                    ":run": run_id,
                    ":until": _iso(until),
                    ":now": _iso(now),
                    ":zero": 0,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise
            held = self.read()
            raise ConnectorBusyError(
                f"connector {self.name!r} is already running (run {held.get('lease_id')!r} "
                f"holds it until {held.get('lease_until')}); this run pulled nothing"
            ) from None
        item: dict[str, Any] = dict(response["Attributes"])
        return ConnectorState(
            name=self.name,
            version=int(item.get("version", 0)),
            position=_position(item),
            seen_keys=frozenset(str(k) for k in item.get("seen_keys", [])),
            item=item,
        )

    def advance(
        self,
        run_id: str,
        *,
        expected_version: int,
        position: Position,
        rows: int,
        seen_keys: frozenset[str] = frozenset(),
    ) -> int:
        """Move the watermark to ``position``; return the new version."""
        values: dict[str, Any] = {
            ":run": run_id,
            ":version": expected_version,
            ":next": expected_version + 1,
            ":watermark": encode_value(position.watermark),
            ":rows": rows,
            ":zero": 0,
        }
        sets = [
            "watermark = :watermark",
            "version = :next",
            "total_rows = if_not_exists(total_rows, :zero) + :rows",
        ]
        removes = []
        if position.key is not None:
            values[":key"] = encode_value(position.key)
            sets.append("watermark_key = :key")
        else:
            removes.append("watermark_key")
        if seen_keys:
            values[":seen"] = sorted(seen_keys)
            sets.append("seen_keys = :seen")
        else:
            removes.append("seen_keys")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            aws.table(self._table).update_item(
                Key=self.key,
                UpdateExpression=expression,
                ConditionExpression="lease_id = :run AND version = :version",
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise
            raise WatermarkConflictError(
                f"connector {self.name!r}: the watermark changed under run {run_id!r} (its lease "
                "expired and another run took over); the objects this run wrote may repeat rows "
                "(ingestion stores each record once), the watermark was not moved"
            ) from None
        return expected_version + 1

    def finish(
        self,
        run_id: str,
        *,
        now: dt.datetime,
        status: str,
        rows: int,
        objects: int,
        error: str = "",
    ) -> None:
        """Record the outcome and release the lease (if this run still holds it)."""
        values: dict[str, Any] = {
            ":at": _iso(now),
            ":status": status,
            ":rows": rows,
            ":objects": objects,
            ":run": run_id,
        }
        sets = [
            "last_run_at = :at",
            "last_status = :status",
            "rows_pulled = :rows",
            "objects_written = :objects",
            "last_run_id = :run",
        ]
        removes = []
        if error:
            values[":error"] = error[:2000]
            sets.append("last_error = :error")
        else:
            removes.append("last_error")

        def expression(extra_removes: list[str]) -> str:
            removed = removes + extra_removes
            return "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removed) if removed else "")

        table = aws.table(self._table)
        try:
            table.update_item(
                Key=self.key,
                UpdateExpression=expression(["lease_id", "lease_until"]),
                ConditionExpression="lease_id = :run",
                ExpressionAttributeValues=values,
            )
        except ClientError as failure:
            if not _is_conditional_failure(failure):
                raise
            # Another run holds the lease now: record the outcome, leave its lease alone.
            table.update_item(
                Key=self.key, UpdateExpression=expression([]), ExpressionAttributeValues=values
            )
