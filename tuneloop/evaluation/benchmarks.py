"""Benchmark item types and content versions.

A benchmark's version is the sha256 of its normalized content: the validated items as
canonical JSON (sorted keys, answers as indexes, defaults filled in), one per line. Key
order, spacing, blank lines or writing the answer as text do not change it; any change to
what is scored does. The gate compares models only on identical versions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

MULTIPLE_CHOICE = "multiple_choice"
GENERATIVE = "generative"
LOGLIKELIHOOD = "loglikelihood"
# Bumped when the meaning of the normalized form changes, so old versions never collide.
_VERSION_SALT = "tuneloop-benchmark/1"


@dataclass(frozen=True)
class MultipleChoiceItem:
    """Scored by the log-likelihood of each choice continuation given the prompt."""

    id: str
    prompt: str
    choices: tuple[str, ...]
    answer: int
    tags: tuple[str, ...] = ()
    # lm-eval's ``target_delimiter``, put before every choice as is. None (custom JSONL and
    # MMLU): a space, or nothing when the prompt already ends in whitespace.
    target_delimiter: str | None = None

    def normalized(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "prompt": self.prompt,
            "choices": list(self.choices),
            "answer": self.answer,
            "tags": list(self.tags),
        }
        if self.target_delimiter is not None:  # absent by default: old versions stay valid
            out["target_delimiter"] = self.target_delimiter
        return out


@dataclass(frozen=True)
class LoglikelihoodItem:
    """lm-eval ``output_type: loglikelihood``: log P(continuation | prompt) and whether the
    continuation is the greedy one (``acc``)."""

    id: str
    prompt: str
    continuation: str
    tags: tuple[str, ...] = ()

    def normalized(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "continuation": self.continuation,
            "tags": list(self.tags),
        }


@dataclass(frozen=True)
class GenerativeItem:
    """Scored by comparing a greedy generation with the references."""

    id: str
    prompt: str
    references: tuple[Any, ...]
    scorer: str
    scorer_args: dict[str, Any] = field(default_factory=dict)
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def normalized(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "references": list(self.references),
            "scorer": self.scorer,
            "scorer_args": self.scorer_args,
            "max_new_tokens": self.max_new_tokens,
            "stop": list(self.stop),
            "tags": list(self.tags),
        }


Item = MultipleChoiceItem | GenerativeItem | LoglikelihoodItem


@dataclass(frozen=True)
class Benchmark:
    """A named suite of items of one kind, with its content version."""

    name: str
    kind: str
    items: tuple[Item, ...]
    version: str

    @classmethod
    def build(cls, name: str, kind: str, items: tuple[Item, ...]) -> Benchmark:
        return cls(name=name, kind=kind, items=items, version=content_version(kind, items))

    def describe(self) -> dict[str, Any]:
        """The entry under ``benchmarks`` in ``evaluation.json``."""
        return {"version": self.version, "n_items": len(self.items), "kind": self.kind}


def content_version(kind: str, items: tuple[Item, ...]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{_VERSION_SALT}\n{kind}\n".encode())
    for item in items:
        line = json.dumps(
            item.normalized(), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()
