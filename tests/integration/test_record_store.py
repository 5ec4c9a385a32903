"""The Records table write path: conditional transactions, several in flight, against moto."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.integration.aws_fixtures import aws_credentials
from tuneloop import aws
from tuneloop.ingest import store as store_module
from tuneloop.ingest.accounting import StoredAt
from tuneloop.ingest.model import Candidate, Content
from tuneloop.ingest.store import DynamoRecordStore, RecordStoreError

__all__ = ["aws_credentials"]  # fixture used by name

TABLE = "Records"
CHUNK = 10


@pytest.fixture(autouse=True)
def small_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto copies the whole table once per item of a transaction: small chunks keep the
    # tests fast while still spreading records over many transactions.
    monkeypatch.setattr(store_module, "MAX_TRANSACTION_ITEMS", CHUNK)


class IsolatedTransactions:
    """The moto client, with transactions applied one at a time and in-flight ones counted.

    moto applies a transaction without isolation (a cancelled one restores a copy of the
    whole table taken when it began, undoing transactions that committed meanwhile);
    DynamoDB isolates them. The lock gives moto that isolation; the count is taken before
    it, so it shows how many transactions the store really had in flight.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        with self._count_lock:
            self.in_flight += 1
            self.calls += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            with self._lock:
                return self._client.transact_write_items(**kwargs)
        finally:
            with self._count_lock:
                self.in_flight -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def client(aws_credentials: None) -> Iterator[IsolatedTransactions]:
    with mock_aws():
        aws.dynamodb().create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "record_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "record_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield IsolatedTransactions(aws.dynamodb())


def candidates(texts: list[str], first_line: int = 1) -> list[Candidate]:
    return [Candidate(line=first_line + i, content=Content(text=t)) for i, t in enumerate(texts)]


def store_for(client: Any, drop: str, max_in_flight: int = 4) -> DynamoRecordStore:
    return DynamoRecordStore(
        TABLE,
        dataset="support",
        source_key=f"drops/support/{drop}.jsonl",
        client=client,
        max_in_flight=max_in_flight,
    )


def stored_items(client: Any) -> dict[str, dict[str, Any]]:
    pages = client.get_paginator("scan").paginate(TableName=TABLE)
    return {item["record_id"]["S"]: item for page in pages for item in page.get("Items", [])}


def test_several_transactions_in_flight_write_every_record_once(
    client: IsolatedTransactions,
) -> None:
    records = candidates([f"record number {i}" for i in range(65)])
    assert store_for(client, "d1").insert_new("d1", records) == {}
    items = stored_items(client)
    assert set(items) == {c.record_id for c in records}
    assert {int(item["line"]["N"]) for item in items.values()} == set(range(1, 66))
    assert client.calls == 7  # CHUNK per transaction
    assert 1 < client.max_in_flight <= 4


def test_in_flight_transactions_are_bounded_by_the_setting(client: IsolatedTransactions) -> None:
    store_for(client, "d1", max_in_flight=2).insert_new(
        "d1", candidates([f"text {i}" for i in range(60)])
    )
    assert client.max_in_flight == 2
    with pytest.raises(ValueError, match="max_in_flight"):
        store_for(client, "d1", max_in_flight=0)


def test_duplicates_inside_one_call_are_written_once_and_reported(
    client: IsolatedTransactions,
) -> None:
    texts = [f"text {i}" for i in range(25)]
    texts[5] = texts[3]  # in the same chunk: a transaction cannot touch an item twice
    texts[21] = texts[3]  # in another chunk, in flight at the same time
    records = candidates(texts)
    existing = store_for(client, "d1").insert_new("d1", records)
    assert existing == {records[3].record_id: StoredAt("d1", 4)}
    assert len(stored_items(client)) == 23
    assert stored_items(client)[records[3].record_id]["line"]["N"] == "4"


def test_records_of_an_earlier_drop_in_every_chunk_are_duplicates(
    client: IsolatedTransactions,
) -> None:
    earlier = candidates([f"text {i}" for i in range(0, 50, 7)], first_line=1000)
    store_for(client, "old").insert_new("old", earlier)
    records = candidates([f"text {i}" for i in range(50)])
    existing = store_for(client, "new").insert_new("new", records)
    assert existing == {c.record_id: StoredAt("old", c.line) for c in earlier}
    items = stored_items(client)
    assert len(items) == 50
    assert {items[c.record_id]["drop_id"]["S"] for c in earlier} == {"old"}


def test_two_drops_writing_overlapping_records_at_once_store_each_once(
    client: IsolatedTransactions,
) -> None:
    shared = [f"shared {i}" for i in range(40)]
    first = candidates(shared + [f"first only {i}" for i in range(20)])
    second = candidates([f"second only {i}" for i in range(20)] + shared[::-1])

    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(store_for(client, "a").insert_new, "a", first)
        two = pool.submit(store_for(client, "b").insert_new, "b", second)
        existing_a, existing_b = one.result(), two.result()

    items = stored_items(client)
    assert len(items) == 80
    shared_ids = {c.record_id for c in candidates(shared)}
    # Every shared record was stored by exactly one drop and is a duplicate in the other.
    assert set(existing_a) | set(existing_b) == shared_ids
    assert not set(existing_a) & set(existing_b)
    for record_id in shared_ids:
        owner = items[record_id]["drop_id"]["S"]
        seen = existing_b if owner == "a" else existing_a
        assert seen[record_id].drop_id == owner


class ConflictingClient(IsolatedTransactions):
    """Cancels the first ``conflicts`` transactions, marking some items TransactionConflict."""

    def __init__(self, client: Any, *, conflicts: int, conflicted: set[str]) -> None:
        super().__init__(client)
        self.conflicts = conflicts
        self.conflicted = conflicted

    def transact_write_items(self, **kwargs: Any) -> Any:
        with self._count_lock:
            cancel = self.conflicts > 0
            self.conflicts -= 1
        if not cancel:
            return super().transact_write_items(**kwargs)
        reasons = [
            {
                "Code": "TransactionConflict"
                if put["Put"]["Item"]["record_id"]["S"] in self.conflicted
                else "None"
            }
            for put in kwargs["TransactItems"]
        ]
        response: Any = {
            "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
            "CancellationReasons": reasons,
        }
        raise ClientError(response, "TransactWriteItems")


def test_items_not_written_because_of_a_conflict_are_retried(
    client: IsolatedTransactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module.time, "sleep", lambda seconds: None)
    records = candidates([f"text {i}" for i in range(45)])
    flaky = ConflictingClient(
        client._client, conflicts=4, conflicted={records[5].record_id, records[33].record_id}
    )
    assert store_for(flaky, "d1").insert_new("d1", records) == {}
    assert set(stored_items(client)) == {c.record_id for c in records}


def test_a_conflict_that_never_clears_is_an_error_naming_the_file(
    client: IsolatedTransactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module.time, "sleep", lambda seconds: None)
    records = candidates(["only text"])
    stuck = ConflictingClient(client._client, conflicts=10**6, conflicted={records[0].record_id})
    with pytest.raises(RecordStoreError, match=r"1 records of drops/support/d1.jsonl"):
        store_for(stuck, "d1").insert_new("d1", records)
    assert stored_items(client) == {}
