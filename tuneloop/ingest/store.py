"""The Records table as a ``RecordStore``: conditional inserts, batched in transactions.

BatchWriteItem cannot carry a condition, and exact dedup relies on
``attribute_not_exists(record_id)``. TransactWriteItems can, for up to 100 puts at a time:
a cancelled transaction reports, per item, whether its condition failed (a duplicate,
returned with its old item) or whether it was merely not written (retried).

Transactions are independent of each other (a record id occurs in one chunk only), so up
to ``max_in_flight`` of them run at once: the write is bound by round trips, not CPU. A
record written by a concurrent drop in between makes a transaction fail its condition or
conflict; either way the next round settles it, so a record is stored once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.ingest.accounting import StoredAt
from tuneloop.ingest.model import Candidate

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_TRANSACTION_ITEMS = 100
# TransactWriteItems accepts 4 MB in total; leave room for keys and attribute names.
MAX_TRANSACTION_BYTES = 3_000_000
MAX_ROUNDS = 6
# Transactions in flight per store (boto3 clients are thread-safe and pool 10 connections;
# DynamoDB bills per item, so more in flight costs nothing extra). One by default: moto,
# which tests and the local platform run on, applies transactions without isolation and
# fails ("dictionary changed size during iteration") when two overlap.
DEFAULT_MAX_IN_FLIGHT = 1
# Cancellation codes that mean "this item was not written, try again".
RETRYABLE = frozenset({"None", "TransactionConflict", "ThrottlingError"})

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


class RecordStoreError(RuntimeError):
    """Records could not be written; the message is retried (the writes are idempotent)."""


class DynamoRecordStore:
    def __init__(
        self,
        table_name: str,
        *,
        dataset: str,
        source_key: str,
        client: DynamoDBClient | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.table_name = table_name
        self.dataset = dataset
        self.source_key = source_key
        self.max_in_flight = max_in_flight
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        return self._client or aws.dynamodb()

    def item(self, drop_id: str, candidate: Candidate, ingested_at: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "record_id": candidate.record_id,
            "dataset": self.dataset,
            "drop_id": drop_id,
            "source_key": self.source_key,
            "line": candidate.line,
            "ingested_at": ingested_at,
        }
        if candidate.content.text is not None:
            item["text"] = candidate.content.text
        else:
            item["messages"] = candidate.content.canonical()
        if candidate.features:
            item["features"] = candidate.features
        if candidate.redactions:
            item["redactions"] = candidate.redactions
        if candidate.minhash:
            # Read back by the near-duplicate index to verify a band match (see near_dup.py).
            item["minhash"] = candidate.minhash
        return item

    def insert_new(self, drop_id: str, candidates: Sequence[Candidate]) -> dict[str, StoredAt]:
        ingested_at = datetime.now(UTC).isoformat()
        existing: dict[str, StoredAt] = {}
        pending: list[dict[str, Any]] = []
        first_line: dict[str, int] = {}
        for candidate in candidates:
            if candidate.record_id in first_line:
                # One transaction cannot touch an item twice: the first occurrence is
                # written, later ones are reported as duplicates of it.
                existing[candidate.record_id] = StoredAt(drop_id, first_line[candidate.record_id])
                continue
            first_line[candidate.record_id] = candidate.line
            pending.append(self.item(drop_id, candidate, ingested_at))
        if not pending:
            return existing
        with ThreadPoolExecutor(max_workers=self.max_in_flight) as pool:
            # pool.map keeps at most max_in_flight transactions running; one runs inline.
            run = map if self.max_in_flight == 1 else pool.map
            for round_number in range(MAX_ROUNDS):
                unwritten: list[dict[str, Any]] = []
                for found, retry in run(self._transact, _chunks(pending)):
                    existing.update(found)
                    unwritten.extend(retry)
                if not unwritten:
                    return existing
                pending = unwritten
                time.sleep(min(0.05 * 2**round_number, 1.0))
        raise RecordStoreError(
            f"{len(pending)} records of {self.source_key} were not written after "
            f"{MAX_ROUNDS} attempts (transaction conflicts or throttling); the message will "
            "be retried"
        )

    def _transact(self, chunk: list[dict[str, Any]]) -> tuple[dict[str, StoredAt], list[Any]]:
        puts: Any = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": {name: _serialize(value) for name, value in item.items()},
                    "ConditionExpression": "attribute_not_exists(record_id)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            for item in chunk
        ]
        try:
            self.client.transact_write_items(TransactItems=puts)
            return {}, []
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons: list[Any] = exc.response.get("CancellationReasons", [])
        found: dict[str, StoredAt] = {}
        retry: list[dict[str, Any]] = []
        for item, reason in zip(chunk, reasons, strict=True):
            code = reason.get("Code", "None")
            if code == "ConditionalCheckFailed":
                found[item["record_id"]] = self._stored_at(item["record_id"], reason.get("Item"))
            elif code in RETRYABLE:
                retry.append(item)
            else:
                raise RecordStoreError(
                    f"cannot store record from {self.source_key} line {item['line']}: "
                    f"{code}: {reason.get('Message', '')}"
                )
        return found, retry

    def _stored_at(self, record_id: str, old_item: dict[str, Any] | None) -> StoredAt:
        if old_item is None:  # not every implementation returns ALL_OLD; read it instead
            response = self.client.get_item(
                TableName=self.table_name,
                Key={"record_id": {"S": record_id}},
                ConsistentRead=True,
                ProjectionExpression="drop_id, #line",
                ExpressionAttributeNames={"#line": "line"},
            )
            old_item = dict(response.get("Item", {}))
        values = {name: _deserialize(value) for name, value in old_item.items()}
        return StoredAt(drop_id=str(values.get("drop_id", "")), line=int(values.get("line", 0)))


def _size_proxy(value: Any) -> str:
    # Binary attributes (the MinHash signature): hex over-estimates their size, which is safe.
    return value.hex() if isinstance(value, bytes) else str(value)


def _chunks(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    size = 0
    for item in items:
        item_size = len(json.dumps(item, ensure_ascii=False, default=_size_proxy).encode("utf-8"))
        if chunk and (
            len(chunk) == MAX_TRANSACTION_ITEMS or size + item_size > MAX_TRANSACTION_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item_size
    if chunk:
        yield chunk
