"""Every record of a file ends in exactly one place, with an in-memory record store."""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from tuneloop.ingest.accounting import FileOutcome, StoredAt, account_for_file
from tuneloop.ingest.model import Candidate
from tuneloop.ingest.parsing import parse_file


class MemoryStore:
    """The Records table's conditional insert, in memory."""

    def __init__(self) -> None:
        self.items: dict[str, StoredAt] = {}

    def insert_new(self, drop_id: str, candidates: Sequence[Candidate]) -> dict[str, StoredAt]:
        existing: dict[str, StoredAt] = {}
        for candidate in candidates:
            if candidate.record_id in self.items:
                existing[candidate.record_id] = self.items[candidate.record_id]
            else:
                self.items[candidate.record_id] = StoredAt(drop_id, candidate.line)
        return existing


def ingest(store: MemoryStore, name: str, body: bytes, drop_id: str = "drop-1") -> FileOutcome:
    return account_for_file(parse_file(name, body), drop_id=drop_id, store=store)


def counts(outcome: FileOutcome) -> tuple[int, int, int, int]:
    return (outcome.received, len(outcome.stored), len(outcome.duplicates), len(outcome.rejections))


BODY = b'{"text": "a"}\n{"text": "b"}\n{"text": " a "}\nnot json\n{"nope": 1}\n'


def test_a_file_reconciles_stored_duplicate_and_quarantined() -> None:
    store = MemoryStore()
    outcome = ingest(store, "drops/default/f.jsonl", BODY)
    assert counts(outcome) == (5, 2, 1, 2)
    assert outcome.duplicates[0].line == 3 and outcome.duplicates[0].of == StoredAt("drop-1", 1)
    assert outcome.reasons() == {"invalid_json": 1, "missing_field": 1}
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
    outcome = ingest(store, "drops/default/g.jsonl", b'{"text": "b"}\n{"text": "c"}\n', "drop-2")
    assert counts(outcome) == (2, 1, 1, 0)
    assert outcome.duplicates[0].of == StoredAt("drop-1", 2)


lines = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(["a", "b", " a ", "", "   "]).map(lambda t: json.dumps({"text": t})),
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
    store = MemoryStore()
    outcomes = []
    for drop_id, batch in (("drop-1", first), ("drop-2", second), ("drop-1", first)):
        text = "\n".join(batch)
        outcome = ingest(store, "drops/default/p.jsonl", text.encode(), drop_id)
        assert outcome.received == len([line for line in text.split("\n") if line.strip()])
        assert outcome.received == (
            len(outcome.stored) + len(outcome.duplicates) + len(outcome.rejections)
        )
        stored_ids = [candidate.record_id for candidate in outcome.stored]
        assert len(stored_ids) == len(set(stored_ids))
        outcomes.append(counts(outcome))
    # The re-delivered first drop reproduces its counts although drop-2 came in between.
    assert outcomes[2] == outcomes[0]
