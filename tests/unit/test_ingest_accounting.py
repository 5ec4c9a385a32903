"""Every record of a file ends in exactly one place, with in-memory store and index."""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from tuneloop.ingest.accounting import FileOutcome, StoredAt, account_for_file
from tuneloop.ingest.minhash import MemoryLSH
from tuneloop.ingest.model import Candidate
from tuneloop.ingest.parsing import parse_file
from tuneloop.ingest.settings import DEFAULT_SETTINGS


class MemoryStore:
    """The Records table's conditional insert, in memory."""

    def __init__(self) -> None:
        self.items: dict[str, StoredAt] = {}
        self.candidates: dict[str, Candidate] = {}

    def insert_new(self, drop_id: str, candidates: Sequence[Candidate]) -> dict[str, StoredAt]:
        existing: dict[str, StoredAt] = {}
        for candidate in candidates:
            if candidate.record_id in self.items:
                existing[candidate.record_id] = self.items[candidate.record_id]
            else:
                self.items[candidate.record_id] = StoredAt(drop_id, candidate.line)
                self.candidates[candidate.record_id] = candidate
        return existing


def memory_index() -> MemoryLSH:
    near = DEFAULT_SETTINGS.near_duplicates
    return MemoryLSH(threshold=near.threshold, bands=near.bands, rows=near.rows)


def ingest(
    store: MemoryStore,
    name: str,
    body: bytes,
    drop_id: str = "drop-1",
    index: MemoryLSH | None = None,
) -> FileOutcome:
    return account_for_file(parse_file(name, body), drop_id=drop_id, store=store, index=index)


def counts(outcome: FileOutcome) -> tuple[int, int, int, int, int]:
    return (
        outcome.received,
        len(outcome.stored),
        len(outcome.duplicates),
        len(outcome.near_duplicates),
        len(outcome.rejections),
    )


BODY = (
    b'{"text": "apple"}\n{"text": "berry"}\n{"text": " apple "}\nnot json\n{"nope": 1}\n'
    b'{"text": "ab"}\n'
)
LONG = (
    "Our support team answers every ticket within one business day and escalates outages "
    "to the on-call engineer, who posts updates on the status page every thirty minutes "
    "until the incident is resolved and a written review is shared with customers"
)


def test_a_file_reconciles_stored_duplicate_and_quarantined() -> None:
    store = MemoryStore()
    outcome = ingest(store, "drops/default/f.jsonl", BODY)
    assert counts(outcome) == (6, 2, 1, 0, 3)
    assert outcome.duplicates[0].line == 3 and outcome.duplicates[0].of == StoredAt("drop-1", 1)
    assert outcome.reasons() == {"invalid_json": 1, "missing_field": 1, "too_short": 1}
    assert len(store.items) == 2


def test_redelivery_of_the_same_drop_counts_the_same_and_stores_nothing_new() -> None:
    store = MemoryStore()
    first = ingest(store, "drops/default/f.jsonl", BODY)
    again = ingest(store, "drops/default/f.jsonl", BODY)
    assert counts(again) == counts(first)
    assert len(store.items) == 2


def test_records_already_stored_by_another_drop_are_duplicates() -> None:
    store = MemoryStore()
    ingest(store, "drops/default/f.jsonl", BODY, drop_id="drop-1")
    body = b'{"text": "berry"}\n{"text": "cherry"}\n'
    outcome = ingest(store, "drops/default/g.jsonl", body, "drop-2")
    assert counts(outcome) == (2, 1, 1, 0, 0)
    assert outcome.duplicates[0].of == StoredAt("drop-1", 2)


def test_personal_data_is_redacted_before_the_dedup_key_is_computed() -> None:
    # Two lines that differ only in the email address are the same record once redacted.
    store = MemoryStore()
    body = (
        b'{"text": "Please write to anna@example.com about the refund."}\n'
        b'{"text": "Please write to omar@example.org about the refund."}\n'
    )
    outcome = ingest(store, "drops/default/pii.jsonl", body)
    assert counts(outcome) == (2, 1, 1, 0, 0)
    (stored,) = outcome.stored
    assert stored.content.text == "Please write to <EMAIL> about the refund."
    assert stored.redactions == {"EMAIL": 1}
    assert outcome.redactions == {"EMAIL": 2}


def test_near_duplicates_within_a_file_and_across_drops_name_the_record_they_match() -> None:
    store, index = MemoryStore(), memory_index()
    first = ingest(
        store,
        "drops/default/a.jsonl",
        (json.dumps({"text": LONG}) + "\n" + json.dumps({"text": LONG + " today"})).encode(),
        index=index,
    )
    assert counts(first) == (2, 1, 0, 1, 0)
    original = first.stored[0].record_id
    assert (first.near_duplicates[0].line, first.near_duplicates[0].of) == (2, original)
    assert first.near_duplicates[0].similarity >= 0.8

    later = ingest(
        store,
        "drops/default/b.jsonl",
        json.dumps({"text": LONG.replace("customers", "our customers")}).encode(),
        drop_id="drop-2",
        index=index,
    )
    assert counts(later) == (1, 0, 0, 1, 0)
    assert later.near_duplicates[0].of == original

    # The original drop, re-delivered, still counts its record as stored.
    again = ingest(
        store,
        "drops/default/a.jsonl",
        (json.dumps({"text": LONG}) + "\n" + json.dumps({"text": LONG + " today"})).encode(),
        index=index,
    )
    assert counts(again) == counts(first)


def test_records_below_the_threshold_are_both_stored() -> None:
    store, index = MemoryStore(), memory_index()
    other = "A completely different sentence about invoices, taxes and the billing portal."
    outcome = ingest(
        store,
        "drops/default/c.jsonl",
        (json.dumps({"text": LONG}) + "\n" + json.dumps({"text": other})).encode(),
        index=index,
    )
    assert counts(outcome) == (2, 2, 0, 0, 0)


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
lines = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(["apple", "berry", " apple ", "", "   ", "ab"]).map(
            lambda t: json.dumps({"text": t})
        ),
        # One long text with a different last word: near-duplicates of each other.
        st.sampled_from(WORDS).map(lambda word: json.dumps({"text": f"{LONG} {word}"})),
        st.lists(st.sampled_from(WORDS), min_size=8, max_size=14).map(
            lambda words: json.dumps({"text": " ".join(words)})
        ),
        st.builds(
            lambda t: json.dumps({"messages": [{"role": "user", "content": t}]}),
            st.text(max_size=5),
        ),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(first=lines, second=lines)
def test_any_lines_are_fully_accounted_for(first: list[str], second: list[str]) -> None:
    store, index = MemoryStore(), memory_index()
    outcomes = []
    for drop_id, batch in (("drop-1", first), ("drop-2", second), ("drop-1", first)):
        text = "\n".join(batch)
        outcome = ingest(store, "drops/default/p.jsonl", text.encode(), drop_id, index)
        assert outcome.received == len([line for line in text.split("\n") if line.strip()])
        assert outcome.received == (
            len(outcome.stored)
            + len(outcome.duplicates)
            + len(outcome.near_duplicates)
            + len(outcome.rejections)
        )
        stored_ids = [candidate.record_id for candidate in outcome.stored]
        assert len(stored_ids) == len(set(stored_ids))
        # A near-duplicate always points at a record that is in the store.
        assert all(near.of in store.items for near in outcome.near_duplicates)
        outcomes.append(counts(outcome))
    # The re-delivered first drop reproduces its counts although drop-2 came in between.
    assert outcomes[2] == outcomes[0]
