"""The serving decode loop against Hugging Face ``generate`` on a tiny model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tiny_models import make_tiny_causal_lm

from tuneloop.serving.decode import DecodeResult, DecodeRow, decode
from tuneloop.serving.engine import Generator

PROMPTS = ["hello", "a much longer prompt than the others, with commas", "x", "abc def"]


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Generator:
    return Generator.from_model_dir(make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "m"))


def run(generator: Generator, rows: list[DecodeRow], **kwargs: Any) -> list[DecodeResult]:
    with torch.inference_mode():
        return decode(
            generator.model,
            rows,
            pad_token_id=generator._pad_id,
            eos_token_ids=generator._eos_ids,
            detokenize=generator._detokenize,
            **kwargs,
        )


def hf_greedy(generator: Generator, ids: list[int], max_new_tokens: int) -> list[int]:
    """What ``model.generate`` gives for one prompt alone, final EOS dropped."""
    with torch.inference_mode():
        output = generator.model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=generator._pad_id,
            eos_token_id=sorted(generator._eos_ids),
        )
    new = output[0, len(ids) :].tolist()
    return new[:-1] if new and new[-1] in generator._eos_ids else new


def encode(generator: Generator, text: str) -> list[int]:
    return list(generator.tokenizer.encode(text))


def test_greedy_tokens_equal_hf_generate_alone_and_batched(generator: Generator) -> None:
    limits = [24, 7, 30, 15]
    prompts = [encode(generator, text) for text in PROMPTS]
    expected = [hf_greedy(generator, ids, n) for ids, n in zip(prompts, limits, strict=True)]
    assert any(len(tokens) > 3 for tokens in expected), expected  # a real comparison

    alone = [
        run(generator, [DecodeRow(ids, n)])[0].tokens
        for ids, n in zip(prompts, limits, strict=True)
    ]
    batched = run(generator, [DecodeRow(ids, n) for ids, n in zip(prompts, limits, strict=True)])

    assert alone == expected
    assert [result.tokens for result in batched] == expected
    for result, limit in zip(batched, limits, strict=True):
        assert result.finish_reason == ("length" if len(result.tokens) == limit else "eos")


def test_finished_rows_are_reported_first_and_leave_the_batch(generator: Generator) -> None:
    rows = [DecodeRow(encode(generator, "hello"), 20), DecodeRow(encode(generator, "hi"), 2)]
    reported: list[tuple[int, int]] = []

    results = run(generator, rows, on_done=lambda i, r: reported.append((i, len(r.tokens))))

    assert reported[0] == (1, 2)  # the short row is answered while the long one goes on
    assert sorted(reported) == [(0, len(results[0].tokens)), (1, 2)]
    assert results[0].tokens == hf_greedy(generator, list(rows[0].prompt_ids), 20)


def test_stop_string_ends_its_row_only(generator: Generator) -> None:
    ids = encode(generator, "hello")
    full = run(generator, [DecodeRow(ids, 16)])[0]
    text = generator._detokenize(full.tokens)
    assert len(text) >= 4, text
    stop = text[2:4]
    stopped, other = run(generator, [DecodeRow(ids, 16, stop=(stop,)), DecodeRow(ids, 16)])
    assert stopped.finish_reason == "stop"
    assert stop in generator._detokenize(stopped.tokens)
    assert stop not in generator._detokenize(stopped.tokens[:-1])
    assert other.tokens == full.tokens


def test_seeded_sampling_is_the_same_batched_or_alone(generator: Generator) -> None:
    sampled = DecodeRow(encode(generator, "abc"), 12, temperature=1.0, top_p=0.9, seed=5)
    greedy = DecodeRow(encode(generator, "a longer greedy prompt"), 12)
    alone = run(generator, [sampled])[0].tokens
    batched = run(generator, [greedy, sampled])
    assert batched[1].tokens == alone
    assert batched[0].tokens == run(generator, [greedy])[0].tokens


def test_top_p_keeps_only_the_nucleus(generator: Generator) -> None:
    ids = encode(generator, "abc")
    with torch.inference_mode():
        logits = generator.model(input_ids=torch.tensor([ids])).logits[0, -1]
    best = int(logits.argmax())
    # A nucleus smaller than the top token's probability holds the top token alone.
    tiny_nucleus = float(logits.softmax(-1)[best]) / 2
    for seed in range(5):
        row = DecodeRow(ids, 1, temperature=1.0, top_p=tiny_nucleus, seed=seed)
        assert run(generator, [row])[0].tokens in ([best], [])  # [] only if best is EOS
