"""Near-duplicate precision and recall on short records, against the previous defaults.

A labelled set is generated (deterministic, ``--seed``): short support-style records of
20-40 words holding numbers, ids and dates, and pairs of

- near-duplicates: one word (never a number or id) changed, inserted or deleted;
- hard negatives: the same record with only a number, an id or a date changed;
- template negatives: the same sentence frame with five or more of its words replaced.

Each pair is ingested as a two-line JSONL file through the whole per-record pipeline
(``account_for_file``: validation, redaction, filters, exact and near dedup); the pair is
predicted "merged" when the second line ends as a near-duplicate (or an exact duplicate)
of the first. The baseline is the previous default near-duplicate settings (word
5-shingles, threshold 0.8, 9 bands x 4 rows, numbers not distinguishing), in the same run::

    .venv/bin/python benchmarks/near_dup_quality.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneloop.ingest.accounting import StoredAt, account_for_file
from tuneloop.ingest.model import Candidate
from tuneloop.ingest.parsing import parse_file
from tuneloop.ingest.settings import IngestSettings, NearDuplicateSettings

# The defaults before near-duplicates were tuned for short records.
PREVIOUS_DEFAULTS = NearDuplicateSettings(
    threshold=0.8, shingle_size=5, bands=9, rows=4, distinct_numbers=False
)

_VOCABULARY = (
    "account billing invoice customer request support team issue problem answer question "
    "password login error screen browser update version device network server service "
    "payment refund order delivery shipping address contact email message reply ticket "
    "agent manager product feature option setting report export import file folder upload "
    "download access permission user group admin role page button window menu search "
    "filter result list table record entry field value status pending closed open urgent "
    "review approve reject cancel confirm reset change remove create delete restore backup "
    "schedule meeting calendar reminder notice warning policy contract renewal plan upgrade "
    "discount price charge balance statement receipt transfer bank card limit credit"
)
_FILLER_WORDS = "the a my our your this that please kindly still again now today soon also"
WORDS = tuple(_VOCABULARY.split())
FILLERS = tuple(_FILLER_WORDS.split())
FRAMES = (
    "hello {w} {w} {f} {w} {w} since {date} and {f} {w} {w} {w} about {id} {f} {w} {w} "
    "{w} {w} {num} times {f} {w} {w} {w} {w} {w} thanks",
    "{f} {w} {w} for {id} was {w} on {date} {f} {w} {w} {w} {w} {w} {f} {w} {w} {w} "
    "{num} {w} {w} {w} {f} {w} {w} {w} {w} {w} {w} {w}",
    "we {w} {f} {w} {w} {w} {id} {w} {w} {num} {w} {w} {f} {w} {w} {w} {w} {date} {w} "
    "{w} {f} {w} {w} {w} {w} {w} {w} {w} {w} {w} {w} {w} {w}",
    "{w} {w} {w} {f} {w} {num} {w} {w} {w} {w} {id} {w} {f} {w} {w} {w}",
)
ID_PREFIXES = ("INV", "ORD", "TKT", "ACC", "REF")


@dataclass(frozen=True)
class Pair:
    kind: str  # "one-word change|insert|delete", "number|id|date", "template"
    first: str
    second: str

    @property
    def duplicate(self) -> bool:
        return self.kind.startswith("one-word")


def _slot(rng: random.Random, name: str) -> str:
    if name == "w":
        return rng.choice(WORDS)
    if name == "f":
        return rng.choice(FILLERS)
    if name == "num":
        return str(rng.randint(2, 9999))
    if name == "id":
        return f"{rng.choice(ID_PREFIXES)}-{rng.randint(10000, 99999)}"
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def record(rng: random.Random, frame: str, extra_words: int) -> list[str]:
    """One record as tokens: a frame filled in, plus up to ``extra_words`` more words."""
    tokens = []
    for token in frame.split():
        tokens.append(_slot(rng, token[1:-1]) if token.startswith("{") else token)
    tokens += [rng.choice(WORDS) for _ in range(extra_words)]
    return tokens


def _is_number_like(token: str) -> bool:
    return any(char.isdigit() for char in token)


def one_word_edit(rng: random.Random, tokens: list[str], kind: str) -> list[str]:
    words = [i for i, t in enumerate(tokens) if not _is_number_like(t)]
    at = rng.choice(words)
    edited = list(tokens)
    if kind == "change":
        edited[at] = rng.choice([w for w in WORDS if w != tokens[at]])
    elif kind == "insert":
        edited.insert(at, rng.choice(WORDS))
    else:
        del edited[at]
    return edited


def number_edit(rng: random.Random, tokens: list[str], kind: str) -> list[str] | None:
    def matches(token: str) -> bool:
        if kind == "id":
            return token[:3] in ID_PREFIXES
        if kind == "date":
            return token.startswith("2026-")
        return token.isdigit()

    spots = [i for i, t in enumerate(tokens) if matches(t)]
    if not spots:
        return None
    at = rng.choice(spots)
    edited = list(tokens)
    while edited[at] == tokens[at]:
        edited[at] = _slot(rng, {"number": "num"}.get(kind, kind))
    return edited


def template_variant(rng: random.Random, tokens: list[str]) -> list[str]:
    words = [i for i, t in enumerate(tokens) if t in WORDS]
    edited = list(tokens)
    for at in rng.sample(words, min(len(words), max(5, len(words) // 3))):
        edited[at] = rng.choice([w for w in WORDS if w != tokens[at]])
    return edited


def labelled_pairs(seed: int, per_kind: int) -> list[Pair]:
    rng = random.Random(seed)
    pairs: list[Pair] = []
    kinds = ("change", "insert", "delete")
    negatives = ("number", "id", "date")
    while len(pairs) < per_kind * 7:
        # Lengths spread evenly over 20-40 words: the shortest are the hardest to match.
        frame, target = rng.choice(FRAMES), rng.randint(20, 40)
        base = record(rng, frame, 0)
        if len(base) > target:
            continue
        base += [rng.choice(WORDS) for _ in range(target - len(base))]
        text = " ".join(base)
        counts = Counter(p.kind for p in pairs)
        for kind in kinds:
            if counts[f"one-word {kind}"] < per_kind:
                edited = " ".join(one_word_edit(rng, base, kind))
                pairs.append(Pair(f"one-word {kind}", text, edited))
        for kind in negatives:
            changed = number_edit(rng, base, kind)
            if changed is not None and counts[kind] < per_kind:
                pairs.append(Pair(kind, text, " ".join(changed)))
        if counts["template"] < per_kind:
            pairs.append(Pair("template", text, " ".join(template_variant(rng, base))))
    return pairs


class _Store:
    def insert_new(self, drop_id: str, candidates: Sequence[Candidate]) -> dict[str, StoredAt]:
        return {}


def merged(pair: Pair, settings: IngestSettings) -> bool:
    body = "\n".join(json.dumps({"text": t}) for t in (pair.first, pair.second)).encode()
    outcome = account_for_file(
        parse_file("drops/bench/pair.jsonl", body),
        drop_id="bench",
        store=_Store(),
        settings=settings,
    )
    second = {d.line for d in outcome.duplicates} | {n.line for n in outcome.near_duplicates}
    if any(r.line == 1 for r in outcome.rejections):
        raise AssertionError(f"a generated record was quarantined: {outcome.rejections[0].message}")
    return 2 in second


@dataclass
class Score:
    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    by_kind: Counter[str] = dataclasses.field(default_factory=Counter)
    short_duplicates: int = 0  # near-duplicate pairs of records of 20-25 words
    short_found: int = 0

    @property
    def short_recall(self) -> float:
        return self.short_found / self.short_duplicates if self.short_duplicates else 1.0

    @property
    def precision(self) -> float:
        found = self.true_positive + self.false_positive
        return self.true_positive / found if found else 1.0

    @property
    def recall(self) -> float:
        labelled = self.true_positive + self.false_negative
        return self.true_positive / labelled if labelled else 1.0


def evaluate(pairs: Sequence[Pair], settings: IngestSettings) -> Score:
    score = Score()
    for pair in pairs:
        predicted = merged(pair, settings)
        if predicted:
            score.by_kind[pair.kind] += 1
        if pair.duplicate and len(pair.first.split()) <= 25:
            score.short_duplicates += 1
            score.short_found += predicted
        if predicted and pair.duplicate:
            score.true_positive += 1
        elif predicted:
            score.false_positive += 1
        elif pair.duplicate:
            score.false_negative += 1
    return score


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--per-kind", type=int, default=300, help="pairs of each kind")
    args = parser.parse_args(argv)
    pairs = labelled_pairs(args.seed, args.per_kind)
    kinds = Counter(p.kind for p in pairs)
    lengths = [len(p.first.split()) for p in pairs]
    listed = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    print(
        f"labelled set: {len(pairs)} pairs ({listed}); "
        f"records of {min(lengths)}-{max(lengths)} words, seed {args.seed}"
    )
    ours = IngestSettings()
    variants = {
        "previous defaults (baseline)": IngestSettings(near_duplicates=PREVIOUS_DEFAULTS),
        "current defaults": ours,
        # What each half of the change buys: the new shingles with numbers not distinguishing.
        "ablation: current shingles, numbers not distinct": IngestSettings(
            near_duplicates=dataclasses.replace(ours.near_duplicates, distinct_numbers=False)
        ),
    }
    scores: dict[str, Score] = {}
    for name, settings in variants.items():
        near = settings.near_duplicates
        started = time.perf_counter()
        scores[name] = evaluate(pairs, settings)
        seconds = time.perf_counter() - started
        score = scores[name]
        print(
            f"{name}: shingles {near.shingle_size}, threshold {near.threshold}, "
            f"{near.bands} bands x {near.rows} rows, distinct numbers {near.distinct_numbers}"
        )
        print(
            f"  precision {score.precision:.3f}  recall {score.recall:.3f}  "
            f"(TP {score.true_positive}, FP {score.false_positive}, FN {score.false_negative}; "
            f"{len(pairs) / seconds:.0f} pairs/s); recall on 20-25 words {score.short_recall:.3f}"
        )
        print(
            "  merged per kind: "
            + ", ".join(f"{k} {score.by_kind[k]}/{kinds[k]}" for k in sorted(kinds))
        )
    base, now = scores["previous defaults (baseline)"], scores["current defaults"]
    print(
        f"recall: {now.recall:.3f} vs {base.recall:.3f} baseline "
        f"({now.recall / base.recall if base.recall else float('inf'):.2f}x); "
        f"precision: {now.precision:.3f} vs {base.precision:.3f}"
    )
    goal = now.recall >= 0.9 and now.precision >= 0.95
    print(f"goal (recall >= 0.9 at precision >= 0.95): {'met' if goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
