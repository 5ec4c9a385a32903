"""The train channel: read JSONL records, tokenize them into labelled examples, batch them.

Records are ``{"text": str}`` (loss on every token) or ``{"messages": [{"role", "content"}]}``
(loss only on assistant turns; prompt tokens get label -100).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuneloop.training.chat import Message, assistant_spans
from tuneloop.training.config import TrainingError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Dataset:
    records: list[dict[str, Any]]
    sha256: str  # of the channel's .jsonl files' bytes, concatenated in path order
    files: list[str]
    # One entry per file: {"channel", "file", "sha256", "records"}; replay picks added by mix.
    manifest: list[dict[str, Any]] = field(default_factory=list)

    def manifest_sha256(self) -> str:
        """Identifies exactly which data trained a model (files and any replay sample)."""
        payload = json.dumps(self.manifest, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


def read_channel(channel: Path, name: str = "train") -> Dataset:
    """All records of the ``.jsonl`` files under ``channel``; TrainingError if none or bad."""
    if not channel.is_dir():
        raise TrainingError(f"{name} channel {channel} does not exist or is not a folder")
    files = sorted(p for p in channel.rglob("*.jsonl") if p.is_file())
    if not files:
        raise TrainingError(f"{name} channel {channel} holds no .jsonl files")
    digest = hashlib.sha256()
    records: list[dict[str, Any]] = []
    manifest: list[dict[str, Any]] = []
    for path in files:
        try:
            data = path.read_bytes()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TrainingError(f"cannot read {path.name}: {exc}") from exc
        digest.update(data)
        before = len(records)
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                records.append(_parse_record(line, f"{path.name}:{number}"))
        manifest.append(
            {
                "channel": name,
                "file": str(path.relative_to(channel)),
                "sha256": hashlib.sha256(data).hexdigest(),
                "records": len(records) - before,
            }
        )
    if not records:
        raise TrainingError(f"{name} channel {channel} has no records (its .jsonl files are empty)")
    names = [str(p.relative_to(channel)) for p in files]
    return Dataset(records, digest.hexdigest(), names, manifest)


def has_records(channel: Path) -> bool:
    """True when ``channel`` holds a ``.jsonl`` file with a non-blank line."""
    if not channel.is_dir():
        return False
    for path in channel.rglob("*.jsonl"):
        try:
            with path.open("rb") as lines:
                if any(line.strip() for line in lines):
                    return True
        except OSError:
            continue
    return False


def mix_replay(dataset: Dataset, replay: Dataset, fraction: float, seed: int) -> Dataset:
    """``dataset`` plus a seeded sample of ``replay`` making up ``fraction`` of the result.

    Replaying earlier data while continuing a production adapter keeps it from forgetting
    what it learned before. The sample is drawn without replacement (capped at the replay
    set's size); the manifest records which replay records were used.
    """
    if fraction <= 0:
        return dataset
    wanted = round(fraction / (1 - fraction) * len(dataset.records))
    count = min(len(replay.records), wanted)
    generator = torch.Generator().manual_seed(seed * 31 + 17)
    picks = sorted(torch.randperm(len(replay.records), generator=generator)[:count].tolist())
    selection = {
        "channel": "replay",
        "replay_of": replay.manifest,
        "sampled_records": count,
        "sampled_indices_sha256": hashlib.sha256(json.dumps(picks).encode()).hexdigest(),
    }
    return Dataset(
        records=dataset.records + [replay.records[i] for i in picks],
        sha256=dataset.sha256,
        files=dataset.files,
        manifest=[*dataset.manifest, selection],
    )


def _parse_record(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise TrainingError(f"{where}: not valid JSON ({exc.args[0]})") from exc
    if not isinstance(record, dict):
        raise TrainingError(f"{where}: a record must be a JSON object")
    if isinstance(record.get("text"), str) and record["text"].strip():
        return {"text": record["text"]}
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        for message in messages:
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)
            ):
                raise TrainingError(f"{where}: each message needs string role and content")
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    raise TrainingError(f"{where}: a record needs a non-empty 'text' or 'messages' list")


def encode_record(record: dict[str, Any], tokenizer: Any, max_length: int) -> Example:
    """Token ids and labels for one record, truncated to ``max_length``."""
    if "text" in record:
        ids = list(tokenizer(record["text"])["input_ids"])
        eos = tokenizer.eos_token_id
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)  # so the model learns where a document ends
        ids = ids[:max_length]
        return Example(ids, list(ids))
    return _encode_chat(record["messages"], tokenizer, max_length)


def _encode_chat(messages: list[Message], tokenizer: Any, max_length: int) -> Example:
    text, spans = assistant_spans(tokenizer, messages)
    # The template already holds any BOS/special tokens it wants.
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])[:max_length]
    offsets = list(encoded["offset_mapping"])[:max_length]
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE_INDEX
        for token, (begin, _) in zip(ids, offsets, strict=True)
    ]
    return Example(ids, labels)


def encode_dataset(
    records: Sequence[dict[str, Any]], tokenizer: Any, max_length: int
) -> tuple[list[Example], int]:
    """Examples with at least one predicted token, and how many records were dropped."""
    examples = []
    for record in records:
        example = encode_record(record, tokenizer, max_length)
        # Position 0 is never predicted, so a label must exist after it.
        if any(label != IGNORE_INDEX for label in example.labels[1:]):
            examples.append(example)
    return examples, len(records) - len(examples)


def index_stream(count: int, seed: int) -> Iterator[int]:
    """Example indices forever: a fresh seeded permutation per epoch (resumable by skipping)."""
    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        yield from torch.randperm(count, generator=generator).tolist()
        epoch += 1
