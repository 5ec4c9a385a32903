"""Evaluation: lm-eval-style log-likelihood scoring, scorers, validation, MMLU subset, main()."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch

from tuneloop.evaluation import lm, runner
from tuneloop.evaluation.benchmarks import GenerativeItem, MultipleChoiceItem
from tuneloop.evaluation.custom import load_benchmark_file
from tuneloop.evaluation.errors import BenchmarkError, EvaluationInputError
from tuneloop.evaluation.job import parse_settings, read_hyperparameters
from tuneloop.evaluation.mmlu import (
    format_prompt,
    mmlu_data_path,
    read_mmlu,
    stratified_subset,
    with_fewshot,
)
from tuneloop.evaluation.scorers import score_generation

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.unit.tiny_models import make_tiny_causal_lm

    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> tuple[Any, Any]:
    from tuneloop.models.loading import load_model_dir

    return load_model_dir(tiny_dir)


@pytest.fixture(scope="module")
def mmlu_items() -> list[MultipleChoiceItem]:
    return read_mmlu(mmlu_data_path())


def direct_loglikelihood(model: Any, tokenizer: Any, context: str, continuation: str) -> float:
    """Unbatched, unpadded reference: sum of log-softmax of the logits at the answer tokens."""
    context_ids, cont_ids = lm.encode_pair(tokenizer, context, continuation)
    ids = torch.tensor([context_ids + cont_ids])
    with torch.no_grad():
        logprobs = model(ids).logits[0].double().log_softmax(-1)
    start = len(context_ids) - 1
    return sum(float(logprobs[start + j, token]) for j, token in enumerate(cont_ids))


# --- log-likelihoods -----------------------------------------------------------------------

REQUESTS = [
    ("The capital of France is", " Paris"),
    ("Question: 2+2?\nAnswer:", " A"),
    ("Question: 2+2?\nAnswer:", " B"),  # same input as the previous: shared forward pass
    ("Trailing space ", "moves"),
    ("A much longer context, so that batches need left padding to line up", " at the end"),
    ("é ünïcode", " ✓"),
]


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_loglikelihoods_equal_direct_computation(tiny: tuple[Any, Any], batch_size: int) -> None:
    model, tokenizer = tiny
    got = lm.loglikelihoods(model, tokenizer, REQUESTS, batch_size)
    expected = [direct_loglikelihood(model, tokenizer, c, x) for c, x in REQUESTS]
    assert got == pytest.approx(expected, abs=1e-5)
    assert got[1] != got[2]  # shared context, different answers


SHARED = "The following are questions about arithmetic, answered briefly.\n\n"
PREFIX_REQUESTS = [
    (SHARED + "Question: 2+2?\nAnswer:", " A"),
    (SHARED + "Question: 2+2?\nAnswer:", " B"),
    (SHARED + "Question: what is seven times six, in words?\nAnswer:", " forty-two"),
    (SHARED + "Q:", " yes"),
    ("The capital of France is", " Paris"),
    (SHARED, "Question"),  # the whole shared prefix is this request's context
]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_shared_prefixes_score_like_the_direct_computation(
    tiny: tuple[Any, Any], batch_size: int
) -> None:
    model, tokenizer = tiny
    pairs = [lm.encode_pair(tokenizer, *request) for request in PREFIX_REQUESTS]
    keys = [tuple(context + cont)[:-1] for context, cont in pairs]
    tails = {key: len(cont) for key, (_, cont) in zip(keys, pairs, strict=True)}
    groups = lm.prefix_groups(tails, always=True)
    shared = [length for length, members in groups if len(members) > 1]
    assert shared and max(shared) >= len(lm.encode(tokenizer, SHARED)) // 2  # cache is used
    got = lm.loglikelihoods_greedy(
        model, tokenizer, PREFIX_REQUESTS, batch_size, share_prefixes=True
    )
    expected = [direct_loglikelihood(model, tokenizer, c, x) for c, x in PREFIX_REQUESTS]
    assert [ll for ll, _ in got] == pytest.approx(expected, abs=1e-5)
    reference = lm.loglikelihoods_greedy(model, tokenizer, PREFIX_REQUESTS, 1)
    assert [greedy for _, greedy in got] == [greedy for _, greedy in reference]


def test_prefix_groups_keep_a_token_per_key_and_split_short_prefixes() -> None:
    a = (1,) * 20 + (2, 3)
    b = (1,) * 20 + (4,)
    c = (1,) * 20
    other = (9, 9, 9)
    groups = lm.prefix_groups({b: 1, other: 1, a: 1, c: 1}, always=True)
    assert groups == [(19, [c, a, b]), (0, [other])]
    # A key whose needed positions reach into the shared part shortens the prefix.
    assert lm.prefix_groups({b: 1, a: 5}, always=True) == [(17, [a, b])]
    assert lm.prefix_groups({a: 1, b: 1}, share=False) == [(0, [a, b])]
    short = lm.prefix_groups({(1, 2, 3, 4): 1, (1, 2, 3, 5): 1}, always=True)
    assert short == [(0, [(1, 2, 3, 4), (1, 2, 3, 5)])]  # too short: batched unshared


def test_cost_model_shares_long_prefixes_of_large_groups_only() -> None:
    # Saved (n - 1) * P against n * P * KV_ROW_COST + GROUP_OVERHEAD_TOKENS.
    assert lm.sharing_pays(500, 20)  # 5-shot MMLU, one subject
    assert lm.sharing_pays(500, 2)
    assert lm.sharing_pays(20, 250)  # 0-shot header, a whole subject
    assert not lm.sharing_pays(20, 2)  # the header over two items: overhead dominates
    assert not lm.sharing_pays(20, 4)
    assert not lm.sharing_pays(1000, 1)  # nothing to share with
    assert not lm.sharing_pays(lm.MIN_SHARED_PREFIX - 1, 10_000)
    # Break-even is monotone: more rows or a longer prefix never turns sharing off.
    for rows in range(1, 40):
        for length in range(1, 120):
            if lm.sharing_pays(length, rows):
                assert lm.sharing_pays(length + 1, rows) and lm.sharing_pays(length, rows + 1)


def mmlu_like_keys(
    subjects: int, per_subject: int, header: int, first: int = 100
) -> dict[tuple[int, ...], int]:
    """Inputs of ``subjects`` groups, each a ``header``-token prefix and a distinct question."""
    keys: dict[tuple[int, ...], int] = {}
    for subject in range(first, first + subjects):
        for question in range(per_subject):
            keys[(7,) * 5 + (subject,) * header + (question, 3, question)] = 1
    return keys


def test_prefix_groups_follow_the_cost_model_per_group() -> None:
    # A long-prefix subject of 20 items shares; a subject of 2 items with a short header
    # joins the unshared rest, batched with it rather than on its own.
    keys = {**mmlu_like_keys(1, 20, 400), **mmlu_like_keys(1, 2, 6, first=200)}
    groups = lm.prefix_groups(keys)
    assert [(length, len(members)) for length, members in groups] == [(405, 20), (0, 2)]
    assert sorted(k for _, members in groups for k in members) == sorted(keys)
    # Every input appears once, whatever the decision.
    many = mmlu_like_keys(6, 3, 10)
    flat = [k for _, members in lm.prefix_groups(many) for k in members]
    assert sorted(flat) == sorted(many)
    assert lm.prefix_groups(many) == [(0, sorted(many))]  # 15-token prefixes x 3: no gain


def test_prefix_groups_pick_the_level_of_the_prefix_tree_that_gains_most() -> None:
    # Given 0-shot MMLU's shape: every input starts with the same 11 tokens, each subject's
    # header adds 5 more
    keys: dict[tuple[int, ...], int] = {
        (7,) * 11 + (subject,) * 5 + (question, 3, question): 1
        for subject in range(100, 104)
        for question in range(20)
    }
    # When grouped, each subject is one group: 4 x 16-token prefixes save more than one
    # 11-token prefix over all 80
    groups = lm.prefix_groups(keys)
    assert [(length, len(members)) for length, members in groups] == [(16, 20)] * 4
    assert 4 * lm.sharing_gain(16, 20) > lm.sharing_gain(11, 80)
    # Given 20 subjects of two items each, only the shared start pays, over all 40
    few: dict[tuple[int, ...], int] = {
        (7,) * 11 + (subject,) * 5 + (question, 3, question): 1
        for subject in range(100, 120)
        for question in range(2)
    }
    assert [(length, len(members)) for length, members in lm.prefix_groups(few)] == [(11, 40)]
    # A deep chain of nested prefixes is handled without recursion, in key order
    chain = {(1,) * length: 1 for length in range(2, 3000)}
    groups = lm.prefix_groups(chain)
    assert sorted(k for _, members in groups for k in members) == sorted(chain)


FEWSHOT = "The following are solved questions about arithmetic.\n\n" + "".join(
    f"Question: {a}+{a}?\nAnswer: {2 * a}\n\n" for a in range(1, 6)
)
MMLU_LIKE = [
    (prefix + f"Question: {q}+{q}?\nAnswer:", f" {letter}")
    for prefix in (FEWSHOT, "Q.\n")  # the second too short to pay for six items
    for q in range(6, 12)
    for letter in "ABCD"
]


def test_default_sharing_is_used_and_scores_like_plain_batching(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    pairs = [lm.encode_pair(tokenizer, *request) for request in MMLU_LIKE]
    tails = {tuple(c + x)[:-1]: len(x) for c, x in pairs}
    groups = lm.prefix_groups(tails)
    assert groups[0][0] > 100 and len(groups[0][1]) == 6  # the few-shot subject shares
    assert groups[-1][0] == 0  # the short header's items are batched plain
    plain = lm.loglikelihoods_greedy(model, tokenizer, MMLU_LIKE, 4, share_prefixes=False)
    for batch_size in (1, 3, 8):
        got = lm.loglikelihoods_greedy(model, tokenizer, MMLU_LIKE, batch_size)
        assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in plain], abs=1e-5)
        assert [g for _, g in got] == [g for _, g in plain]
        # Same choice per question (4 requests each) as plain batching.
        for start in range(0, len(MMLU_LIKE), 4):
            mine = [ll for ll, _ in got[start : start + 4]]
            theirs = [ll for ll, _ in plain[start : start + 4]]
            assert mine.index(max(mine)) == theirs.index(max(theirs))


def test_shared_scoring_is_deterministic_across_runs_and_batch_sizes(
    tiny: tuple[Any, Any],
) -> None:
    model, tokenizer = tiny
    first = lm.loglikelihoods_greedy(model, tokenizer, MMLU_LIKE, 3)
    assert lm.loglikelihoods_greedy(model, tokenizer, MMLU_LIKE, 3) == first  # bit for bit
    for batch_size in (1, 2, 5, 16):
        again = lm.loglikelihoods_greedy(model, tokenizer, MMLU_LIKE, batch_size)
        assert [ll for ll, _ in again] == pytest.approx([ll for ll, _ in first], abs=1e-5)
        assert [g for _, g in again] == [g for _, g in first]


def batches_cost(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(len(b) * lengths[b[0]] + lm.BATCH_OVERHEAD_TOKENS for b in batches)


def least_cost(lengths: list[int], batch_size: int) -> int:
    """Brute force over every split of ``lengths`` into consecutive batches."""
    if not lengths:
        return 0
    return min(
        size * lengths[0] + lm.BATCH_OVERHEAD_TOKENS + least_cost(lengths[size:], batch_size)
        for size in range(1, min(batch_size, len(lengths)) + 1)
    )


def test_length_batches_are_consecutive_bounded_and_of_least_cost() -> None:
    # Given inputs sorted longest first, as the scorer sorts them
    lengths = [576, 430, 285, 279, 136, 128, 123, 122, 122, 118, 87, 80, 77, 68, 68, 58, 47]
    # When they are cut into batches of at most 4 rows
    batches = lm.length_batches(lengths, batch_size=4)
    # Then every input is in one batch, in order, and no split costs less
    assert [i for batch in batches for i in batch] == list(range(len(lengths)))
    assert all(1 <= len(batch) <= 4 for batch in batches)
    assert batches_cost(lengths, batches) == least_cost(lengths, 4)
    # Padding a short row up to a long one costs more than a pass: they are not batched.
    assert [0] in batches and [1] in batches
    # Equal lengths fill whole batches, the partial one last (the longest rows first).
    assert lm.length_batches([10] * 9, batch_size=4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    assert lm.length_batches([], batch_size=4) == []


@pytest.mark.parametrize("seed", range(20))
def test_length_batches_match_brute_force(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    lengths = sorted(torch.randint(1, 300, (9,), generator=generator).tolist(), reverse=True)
    for batch_size in (1, 3, 8):
        batches = lm.length_batches(lengths, batch_size)
        assert [i for batch in batches for i in batch] == list(range(len(lengths)))
        assert batches_cost(lengths, batches) == least_cost(lengths, batch_size)


def test_loglikelihoods_are_deterministic(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    first = lm.loglikelihoods(model, tokenizer, REQUESTS, 3)
    assert lm.loglikelihoods(model, tokenizer, REQUESTS, 3) == first


def test_encode_pair_moves_trailing_whitespace_to_the_continuation(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    assert lm.encode_pair(tokenizer, "Answer: ", "B") == lm.encode_pair(tokenizer, "Answer:", " B")
    assert runner.continuation("Answer:", "B") == " B"
    assert runner.continuation("Answer: ", "B") == "B"


def test_acc_and_acc_norm(monkeypatch: pytest.MonkeyPatch, tiny: tuple[Any, Any]) -> None:
    # Fixed log-likelihoods: the raw argmax prefers the short choice; per byte, the long one.
    fake = {" a": -2.0, " bbbbbbbb": -8.0, " no": -9.0, " yes": -1.0}

    def loglikelihoods(model: Any, tok: Any, requests: Any, *args: Any) -> list[float]:
        return [fake[cont] for _, cont in requests]

    monkeypatch.setattr(lm, "loglikelihoods", loglikelihoods)
    items = [
        MultipleChoiceItem("q1", "Q1:", ("a", "bbbbbbbb"), answer=1),
        MultipleChoiceItem("q2", "Q2:", ("no", "yes"), answer=1),
    ]
    bench = runner.Benchmark.build("t", "multiple_choice", tuple(items))
    result = runner.evaluate_model(*tiny, [bench], batch_size=4, log=lambda _: None)["t"]
    q1, q2 = result["items"]
    assert (q1["prediction"], q1["prediction_norm"]) == (0, 1)  # -2/1 < -8/8
    assert (q1["score"], q1["score_norm"]) == (0.0, 1.0)
    assert (q2["prediction"], q2["score"]) == (1, 1.0)
    assert q1["loglikelihoods"] == [-2.0, -8.0]
    assert result["acc"] == 0.5
    assert result["acc_norm"] == 1.0
    assert result["acc_stderr"] == pytest.approx(0.5)  # sample sd 0.7071 / sqrt(2)


# --- generation and scorers ---------------------------------------------------------------


def test_greedy_generation_is_deterministic_and_cut_at_stop(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    prompts = ["Hello", "What is the capital of France?", "Q: 2+2?\nA:"]
    free = lm.generate_greedy(model, tokenizer, prompts, 12, [], batch_size=3)
    assert free == lm.generate_greedy(model, tokenizer, prompts, 12, [], batch_size=1)
    assert all(free)
    # A stop sequence taken from inside an unconstrained output (the tiny model emits random
    # bytes; an ASCII character decodes the same whether generation stopped there or not).
    index, position = next(
        (i, k)
        for i, text in enumerate(free)
        for k in range(1, len(text))
        if text[k].isascii() and text[k].isprintable()
    )
    stop = free[index][position]
    stopped = lm.generate_greedy(model, tokenizer, [prompts[index]], 12, [stop], batch_size=1)
    assert stopped == [free[index][: free[index].find(stop)]]
    assert lm.cut_at_stop("abc\n\ndef", ["\n\n", "c"]) == "ab"


def test_stop_criterion_flags_rows_that_produced_a_stop_sequence(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    rows = [lm.encode(tokenizer, "PROMPTab\n\ncd"), lm.encode(tokenizer, "PROMPTab\ncde")]
    criterion = lm._StopSequences(tokenizer, prompt_length=len("PROMPT"), stop=["\n\n"])
    done = criterion(torch.tensor(rows), torch.zeros(2, 1))
    assert done.tolist() == [True, False]
    # Stop text inside the prompt does not count.
    prompt_only = lm._StopSequences(tokenizer, prompt_length=len("PROMPTab\n\n"), stop=["ab"])
    assert prompt_only(torch.tensor(rows[:1]), torch.zeros(1, 1)).tolist() == [False]


@pytest.mark.parametrize(
    ("scorer", "prediction", "references", "args", "expected"),
    [
        ("exact", "  Paris \n", ["Paris"], {}, 1.0),
        ("exact", "paris", ["Paris"], {}, 0.0),
        ("exact", "paris", ["Paris"], {"ignore_case": True}, 1.0),
        ("exact", "Paris is nice", ["Paris"], {}, 0.0),
        ("regex", "The answer is 42.", [r"\b42\b"], {}, 1.0),
        ("regex", "The answer is 420.", [r"\b42\b"], {}, 0.0),
        ("regex", "YES", [r"^yes$"], {"ignore_case": True}, 1.0),
        ("includes", "I think Rome, Italy", ["Rome"], {}, 1.0),
        ("includes", "I think rome", ["Rome"], {}, 0.0),
        ("includes", "I think rome", ["Milan", "Rome"], {"ignore_case": True}, 1.0),
        ("json", '```json\n{"ok": true, "n": 1}\n```', [{"n": 1, "ok": True}], {}, 1.0),
        ("json", 'Sure: {"ok": true} done', [{"ok": True}], {}, 1.0),
        ("json", '{"ok": false}', [{"ok": True}], {}, 0.0),
        ("json", "not json at all", [{"ok": True}], {}, 0.0),
        ("json", '{"ok": true, "extra": 2}', [{"ok": True, "x": 9}], {"keys": ["ok"]}, 1.0),
        ("json", '{"ok": false, "extra": 2}', [{"ok": True}], {"keys": ["ok"]}, 0.0),
    ],
)
def test_scorers(
    scorer: str, prediction: str, references: list[Any], args: dict[str, Any], expected: float
) -> None:
    assert score_generation(scorer, prediction, references, args) == expected


def test_generative_items_scored_with_their_scorer(
    monkeypatch: pytest.MonkeyPatch, tiny: tuple[Any, Any]
) -> None:
    seen: list[tuple[int, tuple[str, ...]]] = []

    def generate(model: Any, tok: Any, prompts: Any, max_new: int, stop: Any, bs: int) -> Any:
        seen.append((max_new, tuple(stop)))
        return [f"answer to {p}" for p in prompts]

    monkeypatch.setattr(lm, "generate_greedy", generate)
    items = [
        GenerativeItem("g1", "one", ("to one",), "includes", {}, 8, ("\n",)),
        GenerativeItem("g2", "two", ("^answer to two$",), "regex"),
        GenerativeItem("g3", "three", ("nope",), "exact"),
    ]
    bench = runner.Benchmark.build("g", "generative", tuple(items))
    result = runner.evaluate_model(*tiny, [bench], batch_size=2, log=lambda _: None)["g"]
    assert [i["score"] for i in result["items"]] == [1.0, 1.0, 0.0]
    assert result["items"][1]["prediction"] == "answer to two"
    assert result["acc"] == pytest.approx(2 / 3)
    assert "acc_norm" not in result
    assert sorted(seen) == [(8, ("\n",)), (64, ())]  # grouped by generation settings


# --- custom benchmark validation and versions ---------------------------------------------

GOOD_MC = {"id": "a", "prompt": "Q?", "choices": ["x", "y"], "answer": 0}
GOOD_GEN = {"id": "b", "prompt": "Q?", "references": ["x"], "scorer": "exact"}


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ("{not json", None),
        ('["a list"]', None),
        ({**GOOD_MC, "id": "a2", "prompt": ""}, "prompt"),
        ({**GOOD_MC, "id": "a2", "answer": 5}, "answer"),
        ({**GOOD_MC, "id": "a2", "answer": "z"}, "answer"),
        ({**GOOD_MC, "id": "a2", "answer": True}, "answer"),
        ({**GOOD_MC, "id": "a2", "choices": ["x"]}, "choices"),
        ({**GOOD_MC, "id": "a2", "choices": ["x", 3]}, "choices[1]"),
        ({**GOOD_MC, "id": "a2", "tags": "t"}, "tags"),
        ({**GOOD_MC, "id": "a2", "answr": 0}, "answr"),
        ({**GOOD_MC}, "id"),  # duplicate id
        ({"id": "a2", "prompt": "Q?"}, "choices"),
        (GOOD_GEN, "references"),  # a generative item in a multiple-choice file
    ],
)
def test_validation_errors_name_file_line_and_field(
    tmp_path: Path, bad: Any, field: str | None
) -> None:
    path = write_jsonl(tmp_path / "faq.jsonl", [GOOD_MC, "", bad])
    with pytest.raises(BenchmarkError) as caught:
        load_benchmark_file(path)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message.startswith("faq.jsonl line 3")  # the blank line still counts
    assert caught.value.line == 3
    assert caught.value.field == field
    if field:
        assert f"field {field!r}" in message


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({**GOOD_GEN, "scorer": "fuzzy"}, "scorer"),
        ({**GOOD_GEN, "references": []}, "references"),
        ({**GOOD_GEN, "scorer": "regex", "references": ["(unclosed"]}, "references[0]"),
        ({**GOOD_GEN, "scorer_args": {"max_new_tokens": 0}}, "scorer_args.max_new_tokens"),
        ({**GOOD_GEN, "scorer_args": {"temperature": 1}}, "scorer_args.temperature"),
        ({**GOOD_GEN, "scorer_args": {"keys": ["a"]}}, "scorer_args.keys"),
    ],
)
def test_generative_validation_errors(tmp_path: Path, bad: Any, field: str) -> None:
    path = write_jsonl(tmp_path / "gen.jsonl", [bad])
    with pytest.raises(BenchmarkError) as caught:
        load_benchmark_file(path)
    assert str(caught.value).startswith(f"gen.jsonl line 1, field '{field}': ")


def test_empty_or_misnamed_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="no items"):
        load_benchmark_file(write_jsonl(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(BenchmarkError, match="built-in"):
        load_benchmark_file(write_jsonl(tmp_path / "mmlu.jsonl", [GOOD_MC]))


def test_version_is_the_hash_of_normalized_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_jsonl(tmp_path / "a" / "s.jsonl", [GOOD_MC])
    # Same content: other key order and spacing, answer given as text, a blank line.
    same = tmp_path / "b" / "s.jsonl"
    same.write_text('\n{"answer": "x",  "choices": ["x","y"], "prompt": "Q?", "id": "a"}\n')
    changed = write_jsonl(tmp_path / "c.jsonl", [{**GOOD_MC, "prompt": "Q!"}])
    version = load_benchmark_file(first).version
    assert len(version) == 64
    assert load_benchmark_file(same).version == version
    assert load_benchmark_file(changed).version != version


def test_generative_defaults(tmp_path: Path) -> None:
    bench = load_benchmark_file(write_jsonl(tmp_path / "g.jsonl", [GOOD_GEN]))
    (item,) = bench.items
    assert isinstance(item, GenerativeItem)
    assert (bench.kind, item.max_new_tokens, item.stop) == ("generative", 64, ("\n\n",))


# --- MMLU ------------------------------------------------------------------------------------


def test_mmlu_file_reads_all_questions(mmlu_items: list[MultipleChoiceItem]) -> None:
    assert len(mmlu_items) == 14042  # MMLU test split; the two CSV header rows are skipped
    assert len({item.tags[0] for item in mmlu_items}) == 57
    assert len({item.id for item in mmlu_items}) == len(mmlu_items)
    first = mmlu_items[0]
    assert first.choices == ("A", "B", "C", "D")
    assert first.prompt.startswith(
        "The following are multiple choice questions (with answers) about moral scenarios.\n\n"
    )
    assert first.prompt.endswith("\nD. Not wrong, Not wrong\nAnswer:")


def test_stratified_subset_is_deterministic_and_proportional(
    mmlu_items: list[MultipleChoiceItem],
) -> None:
    subset = stratified_subset(mmlu_items, 200, seed=0)
    assert [i.id for i in subset] == [i.id for i in stratified_subset(mmlu_items, 200, seed=0)]
    assert {i.id for i in subset} != {i.id for i in stratified_subset(mmlu_items, 200, seed=1)}
    assert len(subset) == 200
    sizes: dict[str, int] = {}
    for item in mmlu_items:
        sizes[item.tags[0]] = sizes.get(item.tags[0], 0) + 1
    for subject, size in sizes.items():
        quota = 200 * size / len(mmlu_items)
        taken = sum(1 for item in subset if item.tags[0] == subject)
        assert int(quota) <= taken <= int(quota) + 1, subject
    assert stratified_subset(mmlu_items, 0, seed=0) == []
    assert len(stratified_subset(mmlu_items, None, seed=0)) == len(mmlu_items)


def test_mmlu_prompt_matches_the_lm_eval_task_yaml(mmlu_items: list[MultipleChoiceItem]) -> None:
    import jinja2
    import yaml

    task = yaml.safe_load((REPO / "eval_containers/tasks/mmlu.yaml").read_text())
    row = json.loads(mmlu_data_path().read_text(encoding="utf-8").splitlines()[0])
    env = jinja2.Environment(keep_trailing_newline=True)  # as lm-eval's apply_template
    rendered = env.from_string(task["description"]).render(**row) + env.from_string(
        task["doc_to_text"]
    ).render(**row)
    options = tuple(row[f"answer_{x}"] for x in "abcd")
    assert rendered == format_prompt(row["topic"], row["question"], options)
    assert rendered == mmlu_items[0].prompt
    assert task["doc_to_choice"] == list(mmlu_items[0].choices)
    assert task["target_delimiter"] == " "
    target = env.from_string(task["doc_to_target"]).render(**row)
    assert int(target) == mmlu_items[0].answer


def test_mmlu_fewshot_prompts_hold_solved_examples_never_scored(
    mmlu_items: list[MultipleChoiceItem],
) -> None:
    subject = mmlu_items[0].tags[0]
    same = [item for item in mmlu_items if item.tags[0] == subject]
    shots = with_fewshot(mmlu_items, 2)
    assert len(shots) == len(mmlu_items) - 2 * len({item.tags[0] for item in mmlu_items})
    assert {item.id for item in shots}.isdisjoint({same[0].id, same[1].id})
    first = next(item for item in shots if item.tags[0] == subject)
    assert first.id == same[2].id and first.answer == same[2].answer
    header, _, question = same[2].prompt.partition("\n\n")
    solved = [
        item.prompt.partition("\n\n")[2] + " " + "ABCD"[item.answer] + "\n\n" for item in same[:2]
    ]
    assert first.prompt == header + "\n\n" + "".join(solved) + question
    assert with_fewshot(mmlu_items, 0) == mmlu_items
    assert parse_settings({"mmlu_num_fewshot": "5"}).mmlu_num_fewshot == 5


# --- hyperparameters and main() -----------------------------------------------------------


def test_hyperparameters_command_line_over_sm_hps(tmp_path: Path) -> None:
    environ = {"SM_HPS": '{"seed": 3, "batch_size": 2}', "SM_INPUT_CONFIG_DIR": str(tmp_path)}
    raw = read_hyperparameters(["--seed", "5", "--champion_model_data", ""], environ)
    settings = parse_settings(raw)
    assert (settings.seed, settings.batch_size, settings.champion_model_data) == (5, 2, "")
    assert parse_settings({"mmlu_subset_size": "all"}).mmlu_subset_size is None
    with pytest.raises(EvaluationInputError, match="batch_size='x'"):
        parse_settings({"batch_size": "x"})


def load_entry_point() -> Any:
    """eval_containers/evaluate.py loaded from its file, as SageMaker runs it (a script)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "evaluate_entry_point", REPO / "eval_containers" / "evaluate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tar_model(model_dir: Path, archive: Path) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


@pytest.fixture
def job_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path) -> dict[str, Path]:
    paths = {
        "candidate": tmp_path / "in" / "candidate",
        "benchmarks": tmp_path / "in" / "benchmarks",
        "data": tmp_path / "out" / "data",
        "output": tmp_path / "out",
    }
    tar_model(tiny_dir, paths["candidate"] / "model.tar.gz")
    paths["benchmarks"].mkdir(parents=True)
    for name, value in {
        "SM_CHANNEL_CANDIDATE": paths["candidate"],
        "SM_CHANNEL_BENCHMARKS": paths["benchmarks"],
        "SM_OUTPUT_DATA_DIR": paths["data"],
        "SM_OUTPUT_DIR": paths["output"],
        "SM_INPUT_CONFIG_DIR": tmp_path / "no-config",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("SM_HPS", raising=False)
    return paths


def test_main_end_to_end_with_s3_champion(
    job_env: dict[str, Path],
    tiny_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from moto import mock_aws

    from tuneloop import aws

    main = load_entry_point().main

    write_jsonl(
        job_env["benchmarks"] / "faq.jsonl",
        [GOOD_MC, {**GOOD_MC, "id": "c", "choices": ["yes", "no", "maybe"], "answer": "no"}],
    )
    write_jsonl(
        job_env["benchmarks"] / "gen.jsonl",
        [{**GOOD_GEN, "scorer_args": {"max_new_tokens": 4}}],
    )
    (job_env["benchmarks"] / "README.md").write_text("not a benchmark")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset()
    champion_archive = tar_model(tiny_dir, tmp_path / "champion" / "model.tar.gz")
    with mock_aws():
        aws.s3().create_bucket(Bucket="artifacts")
        aws.s3().upload_file(str(champion_archive), "artifacts", "jobs/champ/model.tar.gz")
        argv = ["--mmlu_subset_size", "3", "--seed", "0", "--batch_size", "4"]
        argv += ["--champion_model_data", "s3://artifacts/jobs/champ/model.tar.gz"]
        assert main(argv) == 0
    aws.reset()

    report = json.loads((job_env["data"] / "evaluation.json").read_text())
    assert set(report["benchmarks"]) == {"mmlu", "faq", "gen"}
    assert report["benchmarks"]["mmlu"]["n_items"] == 3
    assert report["benchmarks"]["faq"]["kind"] == "multiple_choice"
    assert report["benchmarks"]["gen"]["kind"] == "generative"
    assert all(len(b["version"]) == 64 for b in report["benchmarks"].values())
    assert set(report["results"]) == {"candidate", "champion"}
    for suite in ("mmlu", "faq"):
        result = report["results"]["candidate"][suite]
        assert {"acc", "acc_stderr", "acc_norm", "items"} <= set(result)
        assert result["acc"] == pytest.approx(
            sum(i["score"] for i in result["items"]) / len(result["items"])
        )
        for item in result["items"]:
            assert {"id", "score", "prediction", "loglikelihoods"} <= set(item)
            assert item["score"] == float(item["prediction"] == item["target"])
    assert len(report["results"]["candidate"]["faq"]["items"][1]["loglikelihoods"]) == 3
    gen_item = report["results"]["candidate"]["gen"]["items"][0]
    assert isinstance(gen_item["prediction"], str) and len(gen_item["prediction"]) <= 4
    # The champion is the same model: same items, same scores.
    assert report["results"]["champion"] == report["results"]["candidate"]
    out = capsys.readouterr().out
    assert "candidate_mmlu_acc=" in out and "champion_faq_acc=" in out


def test_main_without_champion_or_benchmarks(job_env: dict[str, Path]) -> None:
    from tuneloop.evaluation.job import main

    assert main(["--mmlu_subset_size", "2", "--champion_model_data", ""]) == 0
    report = json.loads((job_env["data"] / "evaluation.json").read_text())
    assert list(report["results"]) == ["candidate"]
    assert list(report["benchmarks"]) == ["mmlu"]


def test_a_first_model_is_scored_beside_its_base_model(job_env: dict[str, Path]) -> None:
    from tuneloop.evaluation.job import main

    assert main(["--mmlu_subset_size", "2", "--compare_base", "true"]) == 0
    report = json.loads((job_env["data"] / "evaluation.json").read_text())
    # The candidate here is a plain model folder: it is its own base, scored the same.
    assert list(report["results"]) == ["candidate", "base"]
    assert report["results"]["base"] == report["results"]["candidate"]
    assert main(["--mmlu_subset_size", "2", "--compare_base", "yes"]) == 1
    assert "compare_base='yes'" in (job_env["output"] / "failure").read_text()


def test_the_base_of_an_adapter_chain_is_its_plain_root(tmp_path: Path, tiny_dir: Path) -> None:
    from tuneloop.models.loading import root_base_dir, write_model_metadata

    first, second = tmp_path / "v1", tmp_path / "v2"
    for folder, base in ((first, str(tiny_dir)), (second, str(first))):
        folder.mkdir()
        write_model_metadata(folder, base)
    assert root_base_dir(second) == tiny_dir.resolve()
    assert root_base_dir(tiny_dir) == tiny_dir
    write_model_metadata(first, str(second))  # a cycle
    with pytest.raises(ValueError, match="deeper than"):
        root_base_dir(second)


def test_main_fails_with_the_validation_message(job_env: dict[str, Path]) -> None:
    from tuneloop.evaluation.job import main

    write_jsonl(job_env["benchmarks"] / "faq.jsonl", [GOOD_MC, {**GOOD_MC, "id": "z", "answer": 9}])
    assert main(["--mmlu_subset_size", "2"]) == 1
    failure = (job_env["output"] / "failure").read_text()
    assert "faq.jsonl line 2, field 'answer'" in failure
    assert not (job_env["data"] / "evaluation.json").exists()


def test_main_fails_on_a_missing_model_archive(job_env: dict[str, Path]) -> None:
    from tuneloop.evaluation.job import main

    (job_env["candidate"] / "model.tar.gz").unlink()
    assert main(["--mmlu_subset_size", "2"]) == 1
    assert "holds no model.tar.gz" in (job_env["output"] / "failure").read_text()
