"""The train channel through ``datasets``: memory-mapped, tokenized once, same order as a list.

"The list loader" below is how the trainer read a channel before: every record parsed into a
list, every record encoded into a list of examples, in file and line order.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from tiny_models import make_tiny_causal_lm, make_tiny_tokenizer, set_training_job_env

from tuneloop.training import data
from tuneloop.training.batching import step_plan
from tuneloop.training.config import TrainingError
from tuneloop.training.data import (
    IGNORE_INDEX,
    Dataset,
    Example,
    encode_dataset,
    encode_record,
    mix_replay,
    read_channel,
)
from tuneloop.training.job import run


def varied_records(count: int = 60, tag: str = "") -> list[dict[str, Any]]:
    """Text and chat records of many lengths, and some with nothing to learn at 48 tokens."""
    records: list[dict[str, Any]] = []
    for index in range(count):
        if index % 3 == 0:
            records.append({"text": f"{tag}record {index}: " + "lorem ipsum " * (index % 7)})
        else:
            prompt = "a long question " * (12 if index % 10 == 1 else index % 4)
            records.append(
                {
                    "messages": [
                        {"role": "user", "content": f"{tag}q{index} {prompt}"},
                        {"role": "assistant", "content": "answer " * (1 + index % 5)},
                    ]
                }
            )
    return records


def write_channel(folder: Path, files: dict[str, list[dict[str, Any]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in files.items():
        lines = "".join(
            json.dumps(r) + "\n" + ("\n" if i % 5 == 0 else "") for i, r in enumerate(records)
        )
        (folder / name).write_text(lines, encoding="utf-8")
    return folder


def list_loader(channel: Path, tokenizer: Any, max_length: int) -> list[Example]:
    records = [
        json.loads(line)
        for path in sorted(channel.rglob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    examples = [encode_record(r, tokenizer, max_length) for r in records]
    return [e for e in examples if any(label != IGNORE_INDEX for label in e.labels[1:])]


@pytest.fixture()
def tokenizer() -> Any:
    return make_tiny_tokenizer()


@pytest.fixture()
def channel(tmp_path: Path) -> Path:
    records = varied_records()
    return write_channel(tmp_path / "train", {"b.jsonl": records[30:], "a.jsonl": records[:30]})


def test_channel_and_tokens_are_memory_mapped_arrow_in_the_cache_dir(
    channel: Path, tokenizer: Any, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    dataset = read_channel(channel, cache_dir=cache)
    encoded = encode_dataset(dataset, tokenizer, 48)

    assert not isinstance(dataset.records, list)
    for table in (dataset.records, encoded.table):
        assert table.cache_files, "in memory, not memory-mapped"
        assert all(Path(f["filename"]).is_relative_to(cache) for f in table.cache_files)
    assert len(dataset.records) == 60
    assert [entry["records"] for entry in dataset.manifest] == [30, 30]


def test_second_run_reads_the_cached_tokens_without_encoding(
    channel: Path, tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = encode_dataset(read_channel(channel, cache_dir=cache), tokenizer, 48)
    calls: list[Any] = []

    def counting(*args: Any, **kwargs: Any) -> Example:
        calls.append(args)
        return encode_record(*args, **kwargs)

    monkeypatch.setattr(data, "encode_record", counting)
    second = encode_dataset(read_channel(channel, cache_dir=cache), tokenizer, 48)

    assert calls == []
    assert (first.from_cache, second.from_cache) == (False, True)
    everything = range(len(first))
    assert second.examples(everything) == first.examples(everything)
    assert second.dropped == first.dropped > 0


def test_other_max_length_tokenizer_or_bytes_are_not_served_from_the_cache(
    channel: Path, tokenizer: Any, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    encode_dataset(read_channel(channel, cache_dir=cache), tokenizer, 48)

    assert not encode_dataset(read_channel(channel, cache_dir=cache), tokenizer, 40).from_cache
    plain = make_tiny_tokenizer(chat_template=False)
    assert not encode_dataset(read_channel(channel, cache_dir=cache), plain, 48).from_cache
    with (channel / "a.jsonl").open("a", encoding="utf-8") as extra:
        extra.write(json.dumps({"text": "one more record"}) + "\n")
    changed = encode_dataset(read_channel(channel, cache_dir=cache), tokenizer, 48)
    assert not changed.from_cache
    assert len(changed) == len(
        encode_dataset(read_channel(channel, cache_dir=cache), tokenizer, 48)
    )


@pytest.mark.parametrize("group_by_length", [False, True])
def test_steps_hold_the_same_examples_as_the_list_loader_for_a_seed(
    channel: Path, tokenizer: Any, tmp_path: Path, group_by_length: bool
) -> None:
    old = list_loader(channel, tokenizer, 48)
    new = encode_dataset(read_channel(channel, cache_dir=tmp_path / "cache"), tokenizer, 48)

    old_plan = step_plan([len(e.input_ids) for e in old], 4, 9, group_by_length=group_by_length)
    new_plan = step_plan(new.lengths(), 4, 9, group_by_length=group_by_length)
    for old_step, new_step in islice(zip(old_plan, new_plan, strict=True), 40):
        assert new.examples(new_step) == [old[i] for i in old_step]


def test_records_in_a_list_encode_like_the_channel(
    channel: Path, tokenizer: Any, tmp_path: Path
) -> None:
    in_memory = Dataset(varied_records(), sha256="0" * 64, files=["train.jsonl"])
    listed = encode_dataset(in_memory, tokenizer, 48)
    mapped = encode_dataset(read_channel(channel, cache_dir=tmp_path / "cache"), tokenizer, 48)

    assert not listed.table.cache_files  # nothing of a list is written to disk
    assert listed.examples(range(len(listed))) == mapped.examples(range(len(mapped)))


def test_replay_mix_of_channels_matches_the_mix_of_lists(tmp_path: Path) -> None:
    new_records, old_records = varied_records(30, "new "), varied_records(100, "old ")
    new = read_channel(
        write_channel(tmp_path / "new", {"n.jsonl": new_records}), cache_dir=tmp_path / "c"
    )
    old = read_channel(
        write_channel(tmp_path / "old", {"o.jsonl": old_records}),
        "replay",
        cache_dir=tmp_path / "c",
    )
    listed = mix_replay(
        Dataset(new_records, new.sha256, new.files, new.manifest),
        Dataset(old_records, old.sha256, old.files, old.manifest),
        0.25,
        seed=1,
    )

    mixed = mix_replay(new, old, 0.25, seed=1)

    assert len(mixed.records) == 40
    assert [_record(row) for row in mixed.records] == listed.records
    assert mixed.manifest == listed.manifest


def test_a_bad_record_names_its_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "t.jsonl").write_text('{"text": "fine"}\n\n{"messages": [{"role": 1}]}\n')

    with pytest.raises(TrainingError, match=r"t\.jsonl:3: each message needs string role"):
        read_channel(folder, cache_dir=tmp_path / "cache")


def test_a_rerun_of_the_job_reads_its_tokens_from_the_checkpoint_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = make_tiny_causal_lm(tmp_path / "base")
    write_channel(tmp_path / "input/data/train", {"train.jsonl": varied_records(24)})
    set_training_job_env(monkeypatch, tmp_path, cache=False)
    argv = ["--base_model", str(base), "--max_steps", "3", "--max_seq_length", "48"]
    argv += ["--per_device_batch_size", "2", "--checkpoint_dir", str(tmp_path / "checkpoints")]

    def report() -> dict[str, Any]:
        assert run(argv) == 0
        return json.loads((tmp_path / "output/data/training_report.json").read_text())

    first, second = report(), report()

    assert (first["tokenized_from_cache"], second["tokenized_from_cache"]) == (False, True)
    assert second["losses"] == first["losses"]
    assert second["data_manifest_sha256"] == first["data_manifest_sha256"]
    assert list((tmp_path / "checkpoints/data_cache").rglob("tokens-*.arrow"))


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {"text": row["text"]} if row["text"] is not None else {"messages": row["messages"]}
