"""Held-out perplexity suite and batch-size determinism of the evaluation runner."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tuneloop.evaluation import runner
from tuneloop.evaluation.benchmarks import Benchmark, LoglikelihoodItem, MultipleChoiceItem
from tuneloop.evaluation.errors import BenchmarkError
from tuneloop.evaluation.perplexity import NAME, load_heldout, score_heldout
from tuneloop.training.data import IGNORE_INDEX, encode_record

RECORDS: list[dict[str, Any]] = [
    {"text": "The refund window is 30 days from delivery."},
    {
        "messages": [
            {"role": "user", "content": "How do I reset my password?"},
            {"role": "assistant", "content": "Use the 'Forgot password' link."},
        ]
    },
    {"text": "Short."},
    {"text": "A somewhat longer document, so that batches need left padding to line up. " * 3},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    from tests.unit.tiny_models import make_tiny_causal_lm
    from tuneloop.models.loading import load_model_dir

    return load_model_dir(make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "model"))


def write_records(channel: Path, records: list[Any], name: str = "heldout.jsonl") -> Path:
    channel.mkdir(parents=True, exist_ok=True)
    path = channel / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def direct_nll(model: Any, tokenizer: Any, record: dict[str, Any]) -> tuple[float, int]:
    """Unbatched reference: -sum log P over the tokens training puts a loss on."""
    example = encode_record(record, tokenizer, 512)
    with torch.no_grad():
        logits = model(torch.tensor([example.input_ids])).logits[0].double()
    logprobs = logits.log_softmax(-1)
    total, count = 0.0, 0
    for position, label in enumerate(example.labels[1:]):
        if label != IGNORE_INDEX:
            total -= float(logprobs[position, label])
            count += 1
    return total, count


def test_heldout_scores_equal_direct_computation(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = tiny
    heldout = load_heldout(write_records(tmp_path / "heldout", RECORDS).parent)
    assert heldout is not None
    result = score_heldout(model, tokenizer, heldout, batch_size=3)
    assert [item["id"] for item in result["items"]] == [f"heldout.jsonl:{i}" for i in (1, 2, 3, 4)]
    expected = [direct_nll(model, tokenizer, record) for record in RECORDS]
    for item, (nll_sum, count) in zip(result["items"], expected, strict=True):
        assert item["n_tokens"] == count
        assert item["nll_sum"] == pytest.approx(nll_sum, abs=1e-4)
        assert item["nll_per_token"] == pytest.approx(nll_sum / count, abs=1e-5)
        assert "score" not in item  # a NLL is not an accuracy-like score
    # The chat record scores only its assistant turn, not the prompt.
    assert expected[1][1] < len(encode_record(RECORDS[1], tokenizer, 512).input_ids) - 1
    total_nll = sum(s for s, _ in expected)
    total_tokens = sum(c for _, c in expected)
    assert result["n_tokens"] == total_tokens
    assert result["nll_per_token"] == pytest.approx(total_nll / total_tokens, abs=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-5)
    assert "acc" not in result
    assert set(result["lower_is_better"]) == {"perplexity", "nll_per_token"}
    assert result["nll_per_token_stderr"] > 0
    assert (result["n_items"], result["n_skipped"]) == (4, 0)


def test_missing_or_empty_channel_means_no_suite(tmp_path: Path) -> None:
    assert load_heldout(None) is None
    assert load_heldout(tmp_path / "absent") is None
    write_records(tmp_path / "empty", [""])
    assert load_heldout(tmp_path / "empty") is None


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ("{not json", None),
        ('"a string"', None),
        ({"text": ""}, "text"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "messages"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path: Path, bad: Any, field: str | None) -> None:
    write_records(tmp_path / "h", [RECORDS[0], "", bad], name="slice.jsonl")
    with pytest.raises(BenchmarkError) as caught:
        load_heldout(tmp_path / "h")
    assert str(caught.value).startswith("slice.jsonl line 3")
    assert caught.value.field == field


def test_version_follows_content(tmp_path: Path) -> None:
    first = load_heldout(write_records(tmp_path / "a", RECORDS).parent)
    same = load_heldout(write_records(tmp_path / "b", RECORDS).parent)
    changed = load_heldout(write_records(tmp_path / "c", RECORDS[:3]).parent)
    assert first is not None and same is not None and changed is not None
    assert first.version == same.version != changed.version
    assert first.describe() == {"version": first.version, "n_items": 4, "kind": "perplexity"}


def test_batch_sizes_1_and_8_give_the_same_per_item_scores(
    tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tokenizer = tiny
    prompts = ["Q: 2+2?\nAnswer:", "A much longer question, with padding needed\nAnswer:", "Hi "]
    mc = [
        MultipleChoiceItem(f"m{i}", prompt, ("A", "B", "yes", "no"), answer=i % 4)
        for i, prompt in enumerate(prompts)
    ]
    ll = [LoglikelihoodItem(f"l{i}", prompt, " four") for i, prompt in enumerate(prompts)]
    benchmarks = [
        Benchmark.build("mc", "multiple_choice", tuple(mc)),
        Benchmark.build("ll", "loglikelihood", tuple(ll)),
    ]
    heldout = load_heldout(write_records(tmp_path / "heldout", RECORDS).parent)
    by_batch = {
        size: runner.evaluate_model(
            model, tokenizer, benchmarks, batch_size=size, log=lambda _: None, heldout=heldout
        )
        for size in (1, 8)
    }
    one, eight = by_batch[1], by_batch[8]
    assert set(one) == {"mc", "ll", NAME}
    for a, b in zip(one["mc"]["items"], eight["mc"]["items"], strict=True):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-5)
        assert a["prediction"] == b["prediction"]
    for a, b in zip(one["ll"]["items"], eight["ll"]["items"], strict=True):
        assert a["loglikelihood"] == pytest.approx(b["loglikelihood"], abs=1e-5)
    for a, b in zip(one[NAME]["items"], eight[NAME]["items"], strict=True):
        assert a["nll_per_token"] == pytest.approx(b["nll_per_token"], abs=1e-5)
    # Not trivially equal: the items differ from one another.
    assert len({round(i["nll_per_token"], 6) for i in one[NAME]["items"]}) == len(RECORDS)


# --- the Evaluate job with the heldout channel -------------------------------------------


@pytest.fixture
def job_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: tuple[Any, Any]
) -> dict[str, Path]:
    from tests.unit.tiny_models import make_tiny_causal_lm

    paths = {
        "candidate": make_tiny_causal_lm(tmp_path / "in" / "candidate"),
        "heldout": tmp_path / "in" / "heldout",
        "data": tmp_path / "out" / "data",
        "output": tmp_path / "out",
    }
    for name, value in {
        "SM_CHANNEL_CANDIDATE": paths["candidate"],
        "SM_CHANNEL_BENCHMARKS": tmp_path / "in" / "no-benchmarks",
        "SM_CHANNEL_HELDOUT": paths["heldout"],
        "SM_OUTPUT_DATA_DIR": paths["data"],
        "SM_OUTPUT_DIR": paths["output"],
        "SM_INPUT_CONFIG_DIR": tmp_path / "no-config",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("SM_HPS", raising=False)
    return paths


def test_job_reports_heldout_perplexity_for_candidate_and_champion(
    job_env: dict[str, Path],
) -> None:
    from tuneloop.evaluation.job import main

    write_records(job_env["heldout"], RECORDS[:2])
    argv = ["--mmlu_subset_size", "0", "--champion_model_data", str(job_env["candidate"])]
    assert main(argv) == 0
    report = json.loads((job_env["data"] / "evaluation.json").read_text())
    assert report["benchmarks"][NAME]["kind"] == "perplexity"
    assert report["benchmarks"][NAME]["n_items"] == 2
    assert report["settings"][NAME] == "2 records"
    candidate = report["results"]["candidate"][NAME]
    assert candidate["perplexity"] == pytest.approx(math.exp(candidate["nll_per_token"]))
    assert candidate["perplexity"] > 1.0
    assert [i["id"] for i in candidate["items"]] == ["heldout.jsonl:1", "heldout.jsonl:2"]
    assert report["results"]["champion"][NAME] == candidate


def test_job_without_heldout_channel_notes_the_skip(job_env: dict[str, Path]) -> None:
    from tuneloop.evaluation.job import main

    assert main(["--mmlu_subset_size", "1"]) == 0
    report = json.loads((job_env["data"] / "evaluation.json").read_text())
    assert NAME not in report["benchmarks"]
    assert NAME not in report["results"]["candidate"]
    assert report["settings"][NAME].startswith("skipped")
