"""The train channel: read JSONL records, tokenize them into labelled examples, batch them.

Records are ``{"text": str}`` (loss on every token) or ``{"messages": [{"role", "content"}]}``
(loss only on assistant turns; prompt tokens get label -100).

A channel becomes a memory-mapped Arrow table (Hugging Face ``datasets``) and is tokenized
with ``Dataset.map`` into another one, both cached on disk under a fingerprint of the
channel's bytes, the tokenizer, ``max_seq_length`` and this code: memory does not follow the
data set's size, and a re-run (a spot resume) reads the cached tokens instead of tokenizing.
Row order is the channel's (files in path order, lines in order), so the step plan, and with
it the data order of a seed, is the same as when records were held in a list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import datasets
import numpy as np
import numpy.typing as npt
import pyarrow.compute as pc
import torch
from filelock import FileLock

from tuneloop.training.chat import Message, assistant_spans
from tuneloop.training.config import TrainingError

IGNORE_INDEX = -100
RECORD_FEATURES = datasets.Features(
    {
        "text": datasets.Value("string"),
        "messages": datasets.List(
            {"role": datasets.Value("string"), "content": datasets.Value("string")}
        ),
    }
)
# Labels are the token itself or IGNORE_INDEX, so a flag per token stores them.
TOKEN_FEATURES = datasets.Features(
    {
        "input_ids": datasets.List(datasets.Value("int32")),
        "predicted": datasets.List(datasets.Value("bool")),
    }
)
# A change to how records are read or encoded must not reuse an older cache.
_CODE_DIGEST = hashlib.sha256(
    Path(__file__).read_bytes() + (Path(__file__).parent / "chat.py").read_bytes()
).hexdigest()
Records: TypeAlias = "list[dict[str, Any]] | datasets.Dataset"


@dataclass(frozen=True)
class Dataset:
    # A list (records built in memory), or the Arrow table read_channel memory-maps.
    records: Records
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


@dataclass(frozen=True)
class Encoded:
    """The tokenized examples (an Arrow table) and how many records had nothing to learn."""

    table: datasets.Dataset  # columns input_ids, predicted
    dropped: int
    from_cache: bool  # the tokens were read from an earlier run's cache

    def __len__(self) -> int:
        return len(self.table)

    def lengths(self) -> npt.NDArray[np.int64]:
        """Tokens per example, from the Arrow offsets (no token is read)."""
        column = self.table.data.column("input_ids")
        return np.asarray(pc.list_value_length(column).to_numpy(), dtype=np.int64)

    def examples(self, indices: Sequence[int]) -> list[Example]:
        rows = self.table[list(indices)]
        return [
            Example(ids, [t if keep else IGNORE_INDEX for t, keep in zip(ids, mask, strict=True)])
            for ids, mask in zip(rows["input_ids"], rows["predicted"], strict=True)
        ]


def read_channel(channel: Path, name: str = "train", *, cache_dir: Path | None = None) -> Dataset:
    """The ``.jsonl`` records under ``channel`` as a memory-mapped Arrow table.

    ``cache_dir`` holds the table (and later its tokens); None is ``datasets``' own cache.
    TrainingError if the channel has no records or a bad one (file and line named).
    """
    if not channel.is_dir():
        raise TrainingError(f"{name} channel {channel} does not exist or is not a folder")
    files = sorted(p for p in channel.rglob("*.jsonl") if p.is_file())
    if not files:
        raise TrainingError(f"{name} channel {channel} holds no .jsonl files")
    digest = hashlib.sha256()
    manifest: list[dict[str, Any]] = []
    for path in files:
        file_sha, count = _scan(path, digest)
        manifest.append(
            {
                "channel": name,
                "file": str(path.relative_to(channel)),
                "sha256": file_sha,
                "records": count,
            }
        )
    if not sum(entry["records"] for entry in manifest):
        raise TrainingError(f"{name} channel {channel} has no records (its .jsonl files are empty)")
    key = json.dumps([_CODE_DIGEST, [entry["sha256"] for entry in manifest]])
    try:
        table = datasets.Dataset.from_generator(
            _generate_records,
            features=RECORD_FEATURES,
            cache_dir=str(cache_dir) if cache_dir else None,
            gen_kwargs={"paths": [str(path) for path in files]},
            fingerprint=hashlib.sha256(key.encode()).hexdigest(),
        )
    except datasets.exceptions.DatasetGenerationError as exc:
        if isinstance(exc.__cause__, TrainingError):
            raise exc.__cause__ from None
        raise
    names = [str(p.relative_to(channel)) for p in files]
    return Dataset(table, digest.hexdigest(), names, manifest)


def _scan(path: Path, digest: Any) -> tuple[str, int]:
    """The file's sha256 and record count, read in lines (never whole)."""
    file_digest = hashlib.sha256()
    count = 0
    try:
        with path.open("rb") as lines:
            for line in lines:
                digest.update(line)
                file_digest.update(line)
                if line.decode("utf-8").strip():
                    count += 1
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot read {path.name}: {exc}") from exc
    return file_digest.hexdigest(), count


def _generate_records(paths: list[str]) -> Iterator[dict[str, Any]]:
    for name in paths:
        path = Path(name)
        with path.open(encoding="utf-8", newline="\n") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    record = _parse_record(line, f"{path.name}:{number}")
                    yield {"text": record.get("text"), "messages": record.get("messages")}


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
    records: Records
    if isinstance(dataset.records, list) and isinstance(replay.records, list):
        records = dataset.records + [replay.records[i] for i in picks]
    else:
        # Arrow: the sample is an index mapping over the replay table, nothing is copied.
        records = datasets.concatenate_datasets(
            [_as_table(dataset.records), _as_table(replay.records).select(picks)]
        )
    return Dataset(
        records=records,
        sha256=dataset.sha256,
        files=dataset.files,
        manifest=[*dataset.manifest, selection],
    )


def _as_table(records: Records) -> datasets.Dataset:
    if isinstance(records, datasets.Dataset):
        return records
    rows = [{"text": r.get("text"), "messages": r.get("messages")} for r in records]
    return datasets.Dataset.from_list(rows, features=RECORD_FEATURES)


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


def encode_dataset(dataset: Dataset, tokenizer: Any, max_length: int) -> Encoded:
    """The examples with at least one predicted token, tokenized with ``datasets.map``.

    A memory-mapped channel's tokens are cached beside its Arrow table under a fingerprint
    of the data (the manifest), the tokenizer, ``max_length`` and this code, so a second
    run with the same inputs maps nothing. Records held in a list are tokenized in memory.
    """
    source = _as_table(dataset.records)
    key = json.dumps(
        [dataset.manifest_sha256(), _tokenizer_digest(tokenizer), max_length, _CODE_DIGEST]
    )
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:32]
    cache_file: Path | None = None
    if source.cache_files:
        cache_file = Path(source.cache_files[0]["filename"]).parent / f"tokens-{fingerprint}.arrow"
    options: dict[str, Any] = {
        "batched": True,
        "fn_kwargs": {"tokenizer": tokenizer, "max_length": max_length},
        "remove_columns": source.column_names,
        "features": TOKEN_FEATURES,
        "new_fingerprint": fingerprint,
        "desc": "tokenizing",
    }
    if cache_file is None:
        table = _map(source, options)
        return Encoded(table, len(source) - len(table), False)
    # One process tokenizes; the others (torchrun) wait and then read its cache.
    with FileLock(str(cache_file) + ".lock"):
        from_cache = cache_file.is_file()
        table = _map(source, options | {"cache_file_name": str(cache_file)})
    return Encoded(table, len(source) - len(table), from_cache)


def _map(source: datasets.Dataset, options: dict[str, Any]) -> datasets.Dataset:
    return source.map(_encode_batch, **options)


def _encode_batch(
    batch: dict[str, list[Any]], tokenizer: Any, max_length: int
) -> dict[str, list[Any]]:
    input_ids: list[list[int]] = []
    predicted: list[list[bool]] = []
    for text, messages in zip(batch["text"], batch["messages"], strict=True):
        record = {"text": text} if text is not None else {"messages": messages}
        example = encode_record(record, tokenizer, max_length)
        # Position 0 is never predicted, so a label must exist after it.
        if any(label != IGNORE_INDEX for label in example.labels[1:]):
            input_ids.append(example.input_ids)
            predicted.append([label != IGNORE_INDEX for label in example.labels])
    return {"input_ids": input_ids, "predicted": predicted}


def _tokenizer_digest(tokenizer: Any) -> str:
    """What in a tokenizer decides the tokens: its vocabulary and rules, template, EOS."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    rules = (
        backend.to_str()
        if backend is not None
        else json.dumps(sorted(tokenizer.get_vocab().items()))
    )
    parts = [
        type(tokenizer).__name__,
        rules,
        str(getattr(tokenizer, "chat_template", None)),
        str(tokenizer.eos_token),
        str(tokenizer.eos_token_id),
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def index_stream(count: int, seed: int) -> Iterator[int]:
    """Example indices forever: a fresh seeded permutation per epoch (resumable by skipping)."""
    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        # In chunks: a million-entry list of ints would cost ~40 MB.
        for chunk in torch.randperm(count, generator=generator).split(65_536):
            yield from chunk.tolist()
        epoch += 1
