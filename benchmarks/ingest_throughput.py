"""Ingestion throughput: the full pipeline against parse + normalize alone (the baseline).

A drop of 100,000 JSONL records is generated in memory (support texts and chats, 1 in 10
with personal data, exact and near duplicates, short and junk lines). Both runs are single
process, in this process, on the same bytes:

- baseline: parse → validate and normalize
- full: parse → validate and normalize → redact → quality filters and features → exact
  dedup → near-duplicate detection (MinHash + LSH, in memory) → store (in memory)

AWS is left out (DynamoDB writes are network-bound and batched). Printed per run: records
per second (one core), peak traced memory (``tracemalloc``, measured in a second pass so
its overhead does not distort the timing), and the ratio full / baseline::

    .venv/bin/python benchmarks/ingest_throughput.py                  # 100,000 records
    .venv/bin/python benchmarks/ingest_throughput.py --records 20000  # a quick look
    .venv/bin/python benchmarks/ingest_throughput.py --without-numpy  # an install without numpy
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneloop.ingest.accounting import FileOutcome, StoredAt, account_for_file
from tuneloop.ingest.minhash import MemoryLSH
from tuneloop.ingest.model import Candidate, Rejection
from tuneloop.ingest.parsing import parse_file
from tuneloop.ingest.settings import DEFAULT_SETTINGS
from tuneloop.ingest.validate import validate_entry

FILE = "drops/bench/drop.jsonl"
PRODUCTS = ["Beacon Camera", "Harbor NAS", "Cirrus Thermostat", "Delta Lock", "Gale Fan"]
ACTIONS = ["reset", "update", "return", "pair", "clean", "register", "mount", "charge"]
FILLER = [
    "Customers",
    "asked",
    "about",
    "this",
    "several",
    "times",
    "this",
    "month,",
    "so",
    "the",
    "answer",
    "below",
    "was",
    "reviewed",
    "by",
    "the",
    "product",
    "team",
    "and",
    "the",
    "support",
    "lead",
    "before",
    "it",
    "was",
    "added",
    "to",
    "the",
    "knowledge",
    "base.",
]
PII = [
    "Contact me at jan.kowalski@example.com.",
    "My number is +44 20 7946 0958.",
    "Refund to GB82 WEST 1234 5698 7654 32 please.",
    "I paid with 4111 1111 1111 1111.",
    "The request came from 203.0.113.7.",
]


class MemoryStore:
    def __init__(self) -> None:
        self.items: dict[str, StoredAt] = {}

    def insert_new(self, drop_id: str, candidates: Sequence[Candidate]) -> dict[str, StoredAt]:
        existing = {}
        for candidate in candidates:
            if candidate.record_id in self.items:
                existing[candidate.record_id] = self.items[candidate.record_id]
            else:
                self.items[candidate.record_id] = StoredAt(drop_id, candidate.line)
        return existing


def make_drop(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    lines: list[str] = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.05 and lines:
            lines.append(rng.choice(lines))  # exact duplicate
            continue
        if roll < 0.10 and lines:
            earlier = json.loads(rng.choice(lines))
            if "text" in earlier:
                earlier["text"] += " Thanks."  # near duplicate
                lines.append(json.dumps(earlier))
                continue
        if roll < 0.12:
            lines.append(json.dumps({"text": rng.choice(["ok", "1234 5678 90", "spam " * 30])}))
            continue
        product, action = rng.choice(PRODUCTS), rng.choice(ACTIONS)
        filler = " ".join(rng.sample(FILLER, rng.randint(8, 20)))
        body = f"To {action} the {product} (case {index}), open the app. {filler}"
        if rng.random() < 0.1:
            body += " " + rng.choice(PII)
        if rng.random() < 0.5:
            lines.append(json.dumps({"text": body}))
        else:
            question = f"How do I {action} the {product}? Ticket {index}."
            lines.append(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": question},
                            {"role": "assistant", "content": body},
                        ]
                    }
                )
            )
    return ("\n".join(lines) + "\n").encode()


def baseline(body: bytes) -> int:
    parsed = parse_file(FILE, body)
    valid = 0
    for item in parsed.items:
        if not isinstance(item, Rejection):
            checked = validate_entry(FILE, item, unit=parsed.unit)
            valid += isinstance(checked, Candidate)
    return valid


def full(body: bytes) -> FileOutcome:
    near = DEFAULT_SETTINGS.near_duplicates
    index = MemoryLSH(threshold=near.threshold, bands=near.bands, rows=near.rows)
    return account_for_file(
        parse_file(FILE, body), drop_id="bench", store=MemoryStore(), index=index
    )


def timed(run: Callable[[bytes], object], body: bytes) -> tuple[float, object]:
    started = time.perf_counter()
    result = run(body)
    return time.perf_counter() - started, result


def peak_memory(run: Callable[[bytes], object], body: bytes) -> int:
    tracemalloc.start()
    try:
        run(body)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records in the drop")
    parser.add_argument(
        "--without-numpy",
        action="store_true",
        help="MinHash in pure Python, as an install without numpy computes it",
    )
    args = parser.parse_args(argv)
    if args.without_numpy:
        from tuneloop.ingest import minhash

        minhash.np = None

    print(f"generating a drop of {args.records:,} records ...", flush=True)
    body = make_drop(args.records)
    print(f"drop: {len(body) / 1e6:.1f} MB", flush=True)

    print("timing the baseline (parse + normalize) ...", flush=True)
    base_seconds, _ = timed(baseline, body)
    print("timing the full pipeline ...", flush=True)
    full_seconds, outcome = timed(full, body)
    assert isinstance(outcome, FileOutcome)
    print("measuring peak memory (tracemalloc) ...", flush=True)
    base_peak = peak_memory(baseline, body)
    full_peak = peak_memory(full, body)

    print(
        f"full pipeline outcome: received {outcome.received:,}, stored {len(outcome.stored):,}, "
        f"duplicate {len(outcome.duplicates):,}, near_duplicate "
        f"{len(outcome.near_duplicates):,}, quarantined {len(outcome.rejections):,} "
        f"{outcome.reasons()}; redactions {dict(outcome.redactions)}"
    )
    for name, seconds, peak in (
        ("baseline: parse + normalize", base_seconds, base_peak),
        ("full: + redact, filter, features, dedup, near-dedup", full_seconds, full_peak),
    ):
        print(
            f"{name:<52} {args.records / seconds:>9,.0f} records/s per core, "
            f"{seconds:6.2f} s, peak memory {peak / 1e6:7.1f} MB"
        )
    print(f"full / baseline (records per second) = {base_seconds / full_seconds:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
