"""MinHash signatures and LSH banding: deterministic, close to the true Jaccard, selective."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tuneloop.ingest.minhash import (
    MemoryLSH,
    MinHasher,
    band_hashes,
    candidate_probability,
    jaccard_estimate,
    unpack,
)
from tuneloop.ingest.settings import NearDuplicateSettings

BASE = (
    "the quick brown fox jumps over the lazy dog while the farmer watches from the old "
    "wooden fence and the sun sets slowly behind the hills of the quiet green valley"
)


def true_jaccard(first: str, second: str, size: int = 5) -> float:
    def shingles(text: str) -> set[str]:
        words = re.findall(r"\w+", text.lower())
        return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}

    a, b = shingles(first), shingles(second)
    return len(a & b) / len(a | b)


def test_signatures_do_not_depend_on_the_process_or_its_hash_seed() -> None:
    code = (
        "from tuneloop.ingest.minhash import MinHasher;"
        f"print(MinHasher().signature({BASE!r}).hex())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {MinHasher().signature(BASE).hex()}


def test_numpy_batches_and_the_pure_python_path_give_the_same_signatures() -> None:
    # An install without numpy must compute the same signatures as one with it.
    hasher = MinHasher(num_perm=64)
    texts = [BASE, BASE.upper(), "short text", "", BASE + " again"] * 120
    batch = hasher.signatures(texts, use_numpy=True)
    assert len(batch) == 600 and {len(signature) for signature in batch} == {64 * 4}
    assert batch == hasher.signatures(texts, use_numpy=False)
    assert batch[3] == b"\xff" * 256  # no words: matches nothing real
    assert batch[0] == hasher.signature(texts[0])


@pytest.mark.parametrize(
    "other",
    [
        BASE + " tonight",
        BASE.replace("quick", "slow"),
        BASE.replace("farmer", "old farmer").replace("quiet", "calm"),
        "an entirely different sentence about invoices taxes and refunds for the quarter",
    ],
)
def test_the_estimate_is_close_to_the_true_jaccard(other: str) -> None:
    hasher = MinHasher()
    estimate = jaccard_estimate(hasher.signature(BASE), hasher.signature(other))
    assert abs(estimate - true_jaccard(BASE, other)) < 0.12


def test_case_and_punctuation_do_not_make_a_text_new() -> None:
    hasher = MinHasher()
    shouted = BASE.upper().replace(" and ", ", and ")
    assert jaccard_estimate(hasher.signature(BASE), hasher.signature(shouted)) == 1.0


def test_default_banding_finds_one_word_edits_of_short_records_and_few_far_below() -> None:
    near = NearDuplicateSettings()
    # One word changed in a record of 20 words: 17 of 21 word pairs shared (Jaccard 0.81)
    assert candidate_probability(17 / 21, near.bands, near.rows) > 0.99
    assert candidate_probability(near.threshold, near.bands, near.rows) > 0.9
    assert candidate_probability(0.3, near.bands, near.rows) < 0.1
    assert len(band_hashes(MinHasher().signature(BASE), near.bands, near.rows)) == near.bands


def test_memory_index_returns_the_most_similar_record_above_the_threshold() -> None:
    hasher = MinHasher()
    index = MemoryLSH(threshold=0.8, bands=9, rows=4)
    index.add([("base", hasher.signature(BASE)), ("other", hasher.signature("unrelated words"))])

    match = index.best_match(hasher.signature(BASE + " tonight"))
    assert match is not None and match.of == "base" and match.similarity >= 0.8
    farther = BASE.replace("farmer", "shepherd")  # five of 31 shingles change
    assert true_jaccard(BASE, farther) < 0.75
    assert index.best_match(hasher.signature(farther)) is None
    # A record already in the index is itself, not a near-duplicate of anything.
    assert index.find([("base", hasher.signature(BASE))]) == {}


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateSettings(threshold=0.0)
    with pytest.raises(ValueError, match="exceeds num_perm"):
        NearDuplicateSettings(num_perm=16, bands=9, rows=4)


def test_memory_index_prefers_the_closest_record_and_the_earliest_on_a_tie() -> None:
    hasher = MinHasher()
    index = MemoryLSH(threshold=0.5, bands=9, rows=4)
    close, far = BASE + " tonight", BASE.replace("farmer", "old farmer")
    index.insert("far", hasher.signature(far))
    index.insert("close", hasher.signature(close))
    index.insert("close again", hasher.signature(close))
    match = index.best_match(hasher.signature(BASE + " tonight again"))
    expected = jaccard_estimate(hasher.signature(BASE + " tonight again"), hasher.signature(close))
    assert match is not None and (match.of, match.similarity) == ("close", expected)
    assert index.best_match(hasher.signature("nothing in common with any of them")) is None


def test_jaccard_estimate_counts_equal_values_and_refuses_different_lengths() -> None:
    first = bytes(range(16))
    second = bytes(range(8)) + bytes(8)  # the first two of four uint32 values agree
    assert jaccard_estimate(first, second) == 0.5
    with pytest.raises(ValueError, match="16 and 8 bytes"):
        jaccard_estimate(first, first[:8])


def test_the_pure_python_path_is_the_textbook_formula_at_the_edges() -> None:
    # Shingle hashes at the edges of 32 bits and of the prime, where a packed lane would
    # overflow or need the final subtraction.
    hasher = MinHasher(num_perm=32, seed=3)
    prime = 4_294_967_291
    edges = [0, 1, 5, prime - 1, prime, prime + 4, 2**32 - 1, 2**31, 12345]

    def textbook(hashes: list[int]) -> list[int]:
        pairs = zip(hasher._a, hasher._b, strict=True)
        return [min((a * x + b) % prime for x in hashes) for a, b in pairs]

    for hashes in [[edge] for edge in edges] + [edges, edges[::-1]]:
        assert list(unpack(hasher._python(hashes))) == textbook(hashes)


# --- short records at the default settings ----------------------------------------------

SHORT = (
    "hello our invoice INV-40211 was charged twice on 2026-03-14 and the refund of 120 "
    "dollars is still pending please check the billing report"
)  # 24 words, with an id, a date and a number


def merged_at_defaults(first: str, second: str) -> bool:
    """Whether the second of two records ends as a near-duplicate of the first."""
    import json

    from tuneloop.ingest.accounting import account_for_file
    from tuneloop.ingest.parsing import parse_file

    class Store:
        def insert_new(self, drop_id: str, candidates: object) -> dict[str, object]:
            return {}

    body = "\n".join(json.dumps({"text": t}) for t in (first, second)).encode()
    outcome = account_for_file(parse_file("drops/x/f.jsonl", body), drop_id="d", store=Store())  # type: ignore[arg-type]
    return [n.line for n in outcome.near_duplicates] == [2]


@pytest.mark.parametrize(
    "edited",
    [
        SHORT.replace("pending", "open"),  # a word changed
        SHORT.replace("still pending", "still not pending"),  # a word inserted
        SHORT.replace("please check", "check"),  # a word deleted
        SHORT.replace("hello", "hi"),  # at the very start
    ],
)
def test_one_word_edits_of_a_short_record_are_near_duplicates_at_the_defaults(edited: str) -> None:
    assert merged_at_defaults(SHORT, edited)


@pytest.mark.parametrize(
    "edited",
    [
        SHORT.replace("120", "210"),  # a number
        SHORT.replace("INV-40211", "INV-40212"),  # an id
        SHORT.replace("2026-03-14", "2026-03-15"),  # a date
    ],
)
def test_records_differing_only_in_a_number_id_or_date_are_not_merged(edited: str) -> None:
    assert not merged_at_defaults(SHORT, edited)


def test_distinct_numbers_keeps_numberless_signatures_and_both_paths_agree() -> None:
    plain, numbered = MinHasher(shingle_size=2), MinHasher(shingle_size=2, distinct_numbers=True)
    # A text without digits keeps the signature it always had (stored ones still match)
    assert numbered.signature(BASE) == plain.signature(BASE)
    # Texts whose numbers differ share no values; equal numbers keep every equal value
    assert (
        jaccard_estimate(numbered.signature(SHORT), numbered.signature(SHORT.replace("120", "121")))
        < 0.05
    )
    assert jaccard_estimate(numbered.signature(SHORT), numbered.signature(SHORT + " again")) > 0.8
    texts = [SHORT, BASE, "order 7 of 9", ""] * 50
    assert numbered.signatures(texts, use_numpy=True) == numbered.signatures(texts, use_numpy=False)
