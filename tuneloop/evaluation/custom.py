"""Custom benchmarks: company-written JSONL files, one benchmark per file (name = file stem).

Each non-blank line is one item of either kind (one kind per file):

- multiple choice: ``{"id", "prompt", "choices": [str, ...], "answer": <index or choice
  text>, "tags"?: [str]}``
- generative: ``{"id", "prompt", "references": [...], "scorer": "exact"|"regex"|"includes"|
  "json", "scorer_args"?: {"max_new_tokens", "stop", "ignore_case", "keys"}, "tags"?}``

Every problem raises ``BenchmarkError`` naming the file, line and field, so a bad file fails
the job with a message its author can act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from tuneloop.evaluation.benchmarks import (
    GENERATIVE,
    MULTIPLE_CHOICE,
    Benchmark,
    GenerativeItem,
    Item,
    MultipleChoiceItem,
)
from tuneloop.evaluation.errors import BenchmarkError
from tuneloop.evaluation.scorers import SCORERS

# Built-in suites: MMLU and the held-out perplexity of the heldout channel (never frozen).
RESERVED_NAMES = frozenset({"mmlu", "heldout_perplexity"})
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
DEFAULT_MAX_NEW_TOKENS = 64
MAX_NEW_TOKENS_LIMIT = 2048
# lm-evaluation-harness's default stop sequence for generate_until tasks.
DEFAULT_STOP = ("\n\n",)

_Fail = Callable[[str, str], BenchmarkError]
_MC_FIELDS = frozenset({"id", "prompt", "choices", "answer", "tags"})
_GEN_FIELDS = frozenset({"id", "prompt", "references", "scorer", "scorer_args", "tags"})
_SCORER_ARGS = frozenset({"max_new_tokens", "stop", "ignore_case", "keys"})


def load_custom_benchmarks(
    directory: Path | None, exclude: Collection[Path] = ()
) -> list[Benchmark]:
    """Every ``*.jsonl`` directly in ``directory`` (none if it is absent), sorted by name,
    except ``exclude`` (resolved paths: the data of lm-eval task YAMLs)."""
    if directory is None or not directory.is_dir():
        return []
    paths = sorted(p for p in directory.glob("*.jsonl") if p.resolve() not in exclude)
    return [load_benchmark_file(path) for path in paths]


def load_benchmark_file(path: Path) -> Benchmark:
    name = path.stem
    file = path.name
    if not NAME_PATTERN.match(name):
        raise BenchmarkError(
            file, None, None, "the file name must be letters, digits, '_' or '-' + .jsonl"
        )
    if name in RESERVED_NAMES:
        raise BenchmarkError(file, None, None, f"{name!r} is a built-in benchmark name")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise BenchmarkError(file, line, None, "not valid UTF-8") from exc
    items: list[Item] = []
    seen: dict[str, int] = {}
    kind: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        item = parse_item(raw, file, number)
        item_kind = MULTIPLE_CHOICE if isinstance(item, MultipleChoiceItem) else GENERATIVE
        if kind is None:
            kind = item_kind
        elif item_kind != kind:
            field = "choices" if item_kind == MULTIPLE_CHOICE else "references"
            raise BenchmarkError(
                file,
                number,
                field,
                f"this file holds {kind} items; put {item_kind} items in a separate file",
            )
        if item.id in seen:
            raise BenchmarkError(
                file, number, "id", f"duplicate id {item.id!r} (first on line {seen[item.id]})"
            )
        seen[item.id] = number
        items.append(item)
    if kind is None:
        raise BenchmarkError(file, None, None, "no items (the file is empty)")
    return Benchmark.build(name, kind, tuple(items))


def parse_item(raw: str, file: str, line: int) -> Item:
    """One validated item from one JSONL line."""
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise BenchmarkError(file, line, None, f"not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise BenchmarkError(file, line, None, "each line must be a JSON object")

    def fail(field: str, problem: str) -> BenchmarkError:
        return BenchmarkError(file, line, field, problem)

    has_choices, has_refs = "choices" in obj, "references" in obj
    if has_choices == has_refs:
        raise fail(
            "choices",
            "give either 'choices' (multiple choice) or 'references' (generative), not "
            + ("both" if has_choices else "neither"),
        )
    allowed = _MC_FIELDS if has_choices else _GEN_FIELDS
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise fail(unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")

    item_id = obj.get("id")
    if isinstance(item_id, bool) or not isinstance(item_id, str | int):
        raise fail("id", "required, a string or integer")
    item_id = str(item_id).strip()
    if not item_id:
        raise fail("id", "must not be empty")
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail("prompt", "required, a non-empty string")
    tags = _tags(obj.get("tags", []), fail)

    if has_choices:
        choices = obj["choices"]
        if not isinstance(choices, list) or len(choices) < 2:
            raise fail("choices", "must be a list of at least 2 strings")
        for index, choice in enumerate(choices):
            if not isinstance(choice, str) or not choice.strip():
                raise fail(f"choices[{index}]", "must be a non-empty string")
        if len(set(choices)) != len(choices):
            raise fail("choices", "choices must be distinct")
        answer = _answer(obj.get("answer"), choices, fail)
        return MultipleChoiceItem(item_id, prompt, tuple(choices), answer, tags)

    scorer = obj.get("scorer")
    if scorer not in SCORERS:
        shown = "missing" if scorer is None else f"got {scorer!r}"
        raise fail("scorer", f"{shown}; must be one of {', '.join(SCORERS)}")
    references = obj["references"]
    if not isinstance(references, list) or not references:
        raise fail("references", "must be a non-empty list")
    for index, ref in enumerate(references):
        if scorer != "json" and (not isinstance(ref, str) or not ref):
            raise fail(f"references[{index}]", f"must be a non-empty string for {scorer}")
        if scorer == "regex":
            try:
                re.compile(ref)
            except re.error as exc:
                raise fail(f"references[{index}]", f"invalid regular expression: {exc}") from exc
    args = _scorer_args(obj.get("scorer_args", {}), scorer, fail)
    max_new_tokens = args.pop("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    stop = args.pop("stop", DEFAULT_STOP)
    return GenerativeItem(
        item_id, prompt, tuple(references), scorer, args, max_new_tokens, tuple(stop), tags
    )


def _tags(value: Any, fail: _Fail) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise fail("tags", "must be a list of non-empty strings")
    return tuple(value)


def _answer(value: Any, choices: list[str], fail: _Fail) -> int:
    if isinstance(value, bool):
        raise fail("answer", "must be a choice index or the text of a choice")
    if isinstance(value, int):
        if not 0 <= value < len(choices):
            raise fail("answer", f"index {value} is out of range 0..{len(choices) - 1}")
        return value
    if isinstance(value, str):
        if value not in choices:
            raise fail("answer", f"{value!r} is not one of the choices")
        return choices.index(value)
    raise fail("answer", "required, a choice index or the text of a choice")


def _scorer_args(value: Any, scorer: str, fail: _Fail) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail("scorer_args", "must be an object")
    args = dict(value)
    unknown = sorted(set(args) - _SCORER_ARGS)
    if unknown:
        allowed = ", ".join(sorted(_SCORER_ARGS))
        raise fail(f"scorer_args.{unknown[0]}", f"unknown (allowed: {allowed})")
    if "max_new_tokens" in args:
        n = args["max_new_tokens"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NEW_TOKENS_LIMIT:
            raise fail("scorer_args.max_new_tokens", f"an integer in 1..{MAX_NEW_TOKENS_LIMIT}")
    if "stop" in args:
        stop = args["stop"]
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise fail("scorer_args.stop", "a non-empty string or a list of them")
        args["stop"] = stop
    if "ignore_case" in args and not isinstance(args["ignore_case"], bool):
        raise fail("scorer_args.ignore_case", "must be true or false")
    if "keys" in args:
        if scorer != "json":
            raise fail("scorer_args.keys", "only applies to the json scorer")
        keys = args["keys"]
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise fail("scorer_args.keys", "a non-empty list of strings")
    return args
