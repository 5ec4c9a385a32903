"""Precision and recall of redactors against a labelled corpus (exact span and type)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.ingest.redaction.base import Redactor, find_all


@dataclass(frozen=True)
class TypeScore:
    kind: str
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        labelled = self.true_positives + self.false_negatives
        return self.true_positives / labelled if labelled else 1.0


def load_corpus(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: invalid JSON: {exc}") from exc
    return rows


def score(rows: Iterable[dict[str, Any]], redactors: Sequence[Redactor]) -> dict[str, TypeScore]:
    """Per type: a finding counts only if its start, end and type equal a labelled span."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for row in rows:
        gold = {(s["start"], s["end"], s["type"]) for s in row["spans"]}
        found = {(f.start, f.end, f.kind) for f in find_all(row["text"], redactors)}
        for _, _, kind in gold & found:
            tp[kind] += 1
        for _, _, kind in found - gold:
            fp[kind] += 1
        for _, _, kind in gold - found:
            fn[kind] += 1
    kinds = sorted(set(tp) | set(fp) | set(fn))
    return {kind: TypeScore(kind, tp[kind], fp[kind], fn[kind]) for kind in kinds}


def misses(
    rows: Iterable[dict[str, Any]], redactors: Sequence[Redactor]
) -> list[tuple[str, str, str]]:
    """(row id, "missed"/"spurious", snippet) for every disagreement, to debug a pattern."""
    out: list[tuple[str, str, str]] = []
    for row in rows:
        text = row["text"]
        gold = {(s["start"], s["end"], s["type"]) for s in row["spans"]}
        found = {(f.start, f.end, f.kind) for f in find_all(text, redactors)}
        out += [(row["id"], f"missed {k}", text[s:e]) for s, e, k in sorted(gold - found)]
        out += [(row["id"], f"spurious {k}", text[s:e]) for s, e, k in sorted(found - gold)]
    return out
