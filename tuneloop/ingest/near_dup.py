"""The near-duplicate index across drops, in DynamoDB.

LSH band items live in the Control table under ``near_dup#<dataset>#<band>-<hash>``, each
holding the string set ``record_ids`` of stored records whose signature has that band.
The signatures themselves are the ``minhash`` attribute of the Records items, read back
to verify a band match (bands only nominate candidates).

Costs: per record, one read and one write of each of its bands (9 by default), batched
(BatchGetItem by 100, BatchWriteItem by 25) rather than one UpdateItem per band. A band
item is rewritten as the union of what ``find`` read and the new ids; two drops writing the
same band at the same moment can lose one id from that band (the record stays findable
through its other bands). That trade keeps a 10,000-record drop to a few thousand calls.

Band items are written after the records: a delivery that crashes in between is repaired
by the re-delivery, which finds its records stored by itself and indexes them again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tuneloop import aws
from tuneloop.ingest.minhash import NearMatch, Signature, band_hashes, jaccard_estimate
from tuneloop.ingest.settings import NearDuplicateSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BAND_PREFIX = "near_dup#"
MAX_BATCH_GET = 100
MAX_BATCH_WRITE = 25
MAX_ROUNDS = 8


class NearDuplicateIndexError(RuntimeError):
    """DynamoDB kept items unprocessed; the message is retried (all writes are idempotent)."""


class DynamoNearDuplicateIndex:
    def __init__(
        self,
        *,
        control_table: str,
        records_table: str,
        dataset: str,
        settings: NearDuplicateSettings,
        client: DynamoDBClient | None = None,
    ) -> None:
        self.control_table = control_table
        self.records_table = records_table
        self.dataset = dataset
        self.settings = settings
        self._client = client
        self._members: dict[str, set[str]] = {}  # band items as last read

    @property
    def client(self) -> DynamoDBClient:
        return self._client or aws.dynamodb()

    def band_keys(self, signature: Signature) -> list[str]:
        # Scoped by dataset: a near-duplicate in another dataset is not this one's concern.
        prefix = f"{BAND_PREFIX}{self.dataset}#"
        bands = band_hashes(signature, self.settings.bands, self.settings.rows)
        return [prefix + band for band in bands]

    def find(self, items: Sequence[tuple[str, Signature]]) -> dict[str, NearMatch]:
        keys = {record_id: self.band_keys(signature) for record_id, signature in items}
        self._read_bands({key for record_keys in keys.values() for key in record_keys})
        nominated: dict[str, set[str]] = {}
        for record_id, record_keys in keys.items():
            others = set().union(*(self._members.get(key, set()) for key in record_keys))
            if others and record_id not in others:
                nominated[record_id] = others
        if not nominated:
            return {}
        stored = self._signatures(set().union(*nominated.values()))
        found: dict[str, NearMatch] = {}
        for record_id, signature in items:
            best: NearMatch | None = None
            for other in sorted(nominated.get(record_id, ())):
                if other not in stored:
                    continue  # indexed, but its record is gone
                similarity = jaccard_estimate(signature, stored[other])
                if similarity >= self.settings.threshold and (
                    best is None or similarity > best.similarity
                ):
                    best = NearMatch(other, similarity)
            if best is not None:
                found[record_id] = best
        return found

    def add(self, items: Sequence[tuple[str, Signature]]) -> None:
        additions: dict[str, set[str]] = {}
        for record_id, signature in items:
            for key in self.band_keys(signature):
                additions.setdefault(key, set()).add(record_id)
        self._read_bands({key for key in additions if key not in self._members})
        puts: list[dict[str, Any]] = []
        for key in sorted(additions):
            current = self._members.get(key, set())
            if additions[key] <= current:
                continue  # a re-delivery: already indexed
            if len(current) >= self.settings.max_ids_per_band:
                continue  # boilerplate band: full
            merged = current | additions[key]
            self._members[key] = merged
            puts.append({"key": {"S": key}, "record_ids": {"SS": sorted(merged)}})
        for start in range(0, len(puts), MAX_BATCH_WRITE):
            self._batch_write(puts[start : start + MAX_BATCH_WRITE])

    def _read_bands(self, keys: set[str]) -> None:
        for key in keys:
            self._members.setdefault(key, set())
        for item in self._batch_get(self.control_table, "key", sorted(keys), "#k, record_ids"):
            self._members[item["key"]["S"]] = set(item.get("record_ids", {}).get("SS", []))

    def _signatures(self, record_ids: set[str]) -> dict[str, Signature]:
        found: dict[str, Signature] = {}
        for item in self._batch_get(
            self.records_table, "record_id", sorted(record_ids), "#k, minhash"
        ):
            if "minhash" in item:
                found[item["record_id"]["S"]] = bytes(item["minhash"]["B"])
        return found

    def _batch_get(
        self, table: str, key_name: str, keys: list[str], projection: str
    ) -> Iterator[dict[str, Any]]:
        for start in range(0, len(keys), MAX_BATCH_GET):
            request: Any = {
                table: {
                    "Keys": [{key_name: {"S": k}} for k in keys[start : start + MAX_BATCH_GET]],
                    "ProjectionExpression": projection,
                    "ExpressionAttributeNames": {"#k": key_name},
                    "ConsistentRead": True,
                }
            }
            for round_number in range(MAX_ROUNDS):
                response = self.client.batch_get_item(RequestItems=request)
                yield from response.get("Responses", {}).get(table, [])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2**round_number, 1.0))
            else:
                raise NearDuplicateIndexError(
                    f"DynamoDB left keys of {table} unread after {MAX_ROUNDS} attempts"
                )

    def _batch_write(self, items: list[dict[str, Any]]) -> None:
        request: Any = {self.control_table: [{"PutRequest": {"Item": item}} for item in items]}
        for round_number in range(MAX_ROUNDS):
            response = self.client.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}
            if not request:
                return
            time.sleep(min(0.05 * 2**round_number, 1.0))
        raise NearDuplicateIndexError(
            f"DynamoDB left near-duplicate band items unwritten after {MAX_ROUNDS} attempts"
        )
