"""lm-evaluation-harness task YAMLs over local data: loading, rendering, errors, the job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuneloop.evaluation.benchmarks import LoglikelihoodItem, MultipleChoiceItem
from tuneloop.evaluation.errors import BenchmarkError
from tuneloop.evaluation.harness import find_task_files, load_tasks, read_task

REPO = Path(__file__).resolve().parents[2]

DOCS = [
    {"q": "Which planet is red?", "opts": ["Venus", "Mars"], "label": 1, "topic": "space"},
    {"q": "Water boils at?", "opts": ["100 C", "10 C"], "label": 0, "topic": "physics"},
]

MC_TASK = """\
task: tiny_quiz
dataset_path: json
dataset_kwargs:
  data_files:
    test: data/quiz.jsonl
test_split: test
output_type: multiple_choice
description: "Questions about {{topic}}.\\n\\n"
doc_to_text: "Question: {{q}}\\nAnswer:"
doc_to_choice: opts
doc_to_target: "{{label}}"
num_fewshot: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
metadata:
  version: 1.0
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_docs(path: Path, docs: list[dict[str, Any]]) -> Path:
    return write(path, "".join(json.dumps(doc) + "\n" for doc in docs))


def test_multiple_choice_task_renders_like_lm_eval(tmp_path: Path) -> None:
    write_docs(tmp_path / "tasks" / "data" / "quiz.jsonl", DOCS)
    task = write(tmp_path / "tasks" / "quiz.yaml", MC_TASK)
    (bench,), data = load_tasks([task], None)
    assert data == {(tmp_path / "tasks" / "data" / "quiz.jsonl").resolve()}
    assert (bench.name, bench.kind, len(bench.items)) == ("tiny_quiz", "multiple_choice", 2)
    first, second = bench.items
    assert isinstance(first, MultipleChoiceItem) and isinstance(second, MultipleChoiceItem)
    assert first.prompt == "Questions about space.\n\nQuestion: Which planet is red?\nAnswer:"
    assert (first.choices, first.answer, first.target_delimiter) == (("Venus", "Mars"), 1, " ")
    assert (second.answer, second.id) == (0, "tiny_quiz/1")
    assert len(bench.version) == 64


def test_targets_as_text_choice_lists_and_custom_delimiter(tmp_path: Path) -> None:
    write(
        tmp_path / "yn.json",
        json.dumps([{"s": "Sky is blue", "a": "yes"}, {"s": "Fire is cold", "a": "no"}]),
    )
    task = write(
        tmp_path / "yn.yaml",
        "task: yes_no\ndataset_path: yn.json\ntest_split: train\n"
        "doc_to_text: \"{{s | regex_replace('is', 'IS')}}?\"\n"
        'doc_to_choice: ["yes", "no"]\ndoc_to_target: a\ntarget_delimiter: ": "\n',
    )
    (bench,), _ = load_tasks([task], None)
    answers = [item.answer for item in bench.items if isinstance(item, MultipleChoiceItem)]
    assert answers == [0, 1]
    first = bench.items[0]
    assert isinstance(first, MultipleChoiceItem)
    assert (first.prompt, first.target_delimiter) == ("Sky IS blue?", ": ")
    from tuneloop.evaluation.runner import continuation

    assert continuation(first.prompt, "yes", first.target_delimiter) == ": yes"
    # A template that renders a list literal, and an explicit index.
    task2 = write(
        tmp_path / "yn2.yaml",
        "task: yes_no2\ndataset_path: yn.json\ntest_split: train\ndoc_to_text: s\n"
        "doc_to_choice: \"{{['yes', 'no']}}\"\ndoc_to_target: 0\n",
    )
    (bench2,), _ = load_tasks([task2], None)
    assert [i.answer for i in bench2.items if isinstance(i, MultipleChoiceItem)] == [0, 0]
    assert bench2.items[0].prompt == "Sky is blue"  # a field name, not a template


def test_loglikelihood_task(tmp_path: Path) -> None:
    write_docs(tmp_path / "lambada.jsonl", [{"text": "The cat sat on the", "word": "mat"}])
    task = write(
        tmp_path / "ll.yaml",
        "task: tiny_lambada\noutput_type: loglikelihood\ndataset_path: json\n"
        "dataset_kwargs:\n  data_files: lambada.jsonl\ntest_split: train\n"
        'doc_to_text: "{{text}}"\ndoc_to_target: " {{word}}"\n'
        "metric_list:\n  - metric: perplexity\n  - metric: acc\n",
    )
    (bench,), _ = load_tasks([task], None)
    (item,) = bench.items
    assert bench.kind == "loglikelihood"
    assert item == LoglikelihoodItem("tiny_lambada/0", "The cat sat on the", " mat")


@pytest.mark.parametrize(
    ("yaml_text", "key", "problem"),
    [
        (MC_TASK + "process_docs: !function utils.process_docs\n", None, "unsupported YAML tag"),
        (MC_TASK + "filter_list: []\n", "filter_list", "not supported"),
        (MC_TASK.replace("num_fewshot: 0", "num_fewshot: 5"), "num_fewshot", "only 0"),
        (MC_TASK.replace("multiple_choice", "generate_until"), "output_type", "generate_until"),
        (MC_TASK.replace("dataset_path: json", "dataset_path: cais/mmlu"), "dataset_path", "hub"),
        (MC_TASK.replace("test: data", "validation: data"), "test_split", "not among"),
        (MC_TASK.replace("quiz.jsonl", "missing.jsonl"), "dataset_kwargs.data_files", "found"),
        (MC_TASK.replace("- metric: acc_norm", "- metric: f1"), "metric_list[1].metric", "f1"),
        (MC_TASK.replace("task: tiny_quiz", "task: mmlu"), "task", "built-in"),
        (MC_TASK + "dataset_name: abstract_algebra\n", "dataset_name", "hub"),
    ],
)
def test_unsupported_or_bad_keys_name_the_file_and_key(
    tmp_path: Path, yaml_text: str, key: str | None, problem: str
) -> None:
    write_docs(tmp_path / "data" / "quiz.jsonl", DOCS)
    task = write(tmp_path / "quiz.yaml", yaml_text)
    with pytest.raises(BenchmarkError) as caught:
        read_task(task, None)
    assert caught.value.file == "quiz.yaml"
    assert caught.value.field == key
    assert problem in str(caught.value)


def test_document_errors_name_the_data_file_and_line(tmp_path: Path) -> None:
    docs = [DOCS[0], {"q": "No options", "label": 0, "topic": "x"}]
    write_docs(tmp_path / "data" / "quiz.jsonl", docs)
    task = write(
        tmp_path / "quiz.yaml", MC_TASK.replace("doc_to_choice: opts", 'doc_to_choice: "{{opts}}"')
    )
    with pytest.raises(BenchmarkError, match=r"^quiz\.jsonl line 2: quiz\.yaml doc_to_choice"):
        load_tasks([task], None)
    write_docs(tmp_path / "data" / "quiz.jsonl", [{**DOCS[0], "label": 7}])
    with pytest.raises(BenchmarkError, match="index 7 outside the 2 choices"):
        load_tasks([write(tmp_path / "quiz.yaml", MC_TASK)], None)


def test_the_shipped_mmlu_task_is_native_and_skipped() -> None:
    files = find_task_files([REPO / "eval_containers" / "tasks"])
    assert REPO / "eval_containers" / "tasks" / "mmlu.yaml" in files
    assert read_task(REPO / "eval_containers" / "tasks" / "mmlu.yaml", None) is None


# --- the Evaluate job: task YAMLs from the tasks folder and the benchmarks channel -------


def test_job_scores_tasks_from_the_tasks_folder_and_the_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.tiny_models import make_tiny_causal_lm
    from tuneloop.evaluation.job import main

    benchmarks = tmp_path / "in" / "benchmarks"
    tasks = tmp_path / "tasks"
    # Task in the shipped tasks folder, its data in the benchmarks channel.
    write(tasks / "quiz.yaml", MC_TASK.replace("data/quiz.jsonl", "quiz.jsonl"))
    write_docs(benchmarks / "quiz.jsonl", DOCS)  # task data: not read as a custom benchmark
    # Task and data both in the channel, next to a custom JSONL benchmark.
    write_docs(benchmarks / "yn.jsonl", [{"s": "Sky is blue", "a": 0}])
    write(
        benchmarks / "yn.yaml",
        "task: yes_no\ndataset_path: yn.jsonl\ntest_split: train\ndoc_to_text: s\n"
        'doc_to_choice: ["yes", "no"]\ndoc_to_target: a\n',
    )
    write_docs(
        benchmarks / "faq.jsonl", [{"id": "a", "prompt": "Q?", "choices": ["x", "y"], "answer": 0}]
    )
    for name, value in {
        "SM_CHANNEL_CANDIDATE": make_tiny_causal_lm(tmp_path / "in" / "candidate"),
        "SM_CHANNEL_BENCHMARKS": benchmarks,
        "SM_CHANNEL_HELDOUT": tmp_path / "in" / "no-heldout",
        "SM_OUTPUT_DATA_DIR": tmp_path / "out" / "data",
        "SM_OUTPUT_DIR": tmp_path / "out",
        "SM_INPUT_CONFIG_DIR": tmp_path / "no-config",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("SM_HPS", raising=False)

    assert main(["--mmlu_subset_size", "0"], tasks_dir=tasks) == 0
    report = json.loads((tmp_path / "out" / "data" / "evaluation.json").read_text())
    assert set(report["benchmarks"]) == {"tiny_quiz", "yes_no", "faq"}
    quiz = report["results"]["candidate"]["tiny_quiz"]
    assert quiz["n_items"] == 2 and {"acc", "acc_norm", "acc_stderr"} <= set(quiz)
    assert all(len(item["loglikelihoods"]) == 2 for item in quiz["items"])
    assert [i["target"] for i in quiz["items"]] == [1, 0]

    # A clash of names is an error, not a silent overwrite.
    write(benchmarks / "quiz2.yaml", MC_TASK.replace("data/quiz.jsonl", "quiz.jsonl"))
    assert main(["--mmlu_subset_size", "0"], tasks_dir=tasks) == 1
    assert "tiny_quiz" in (tmp_path / "out" / "failure").read_text()


def test_acc_norm_divides_by_characters_as_lm_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneloop.evaluation import lm, runner

    # Per character "abc" wins (-4.5/3 > -4/2); per UTF-8 byte "éé" would (-4/4 > -4.5/3).
    fake = {" éé": -4.0, " abc": -4.5}

    def loglikelihoods(model: Any, tok: Any, requests: Any, *args: Any) -> list[float]:
        return [fake[cont] for _, cont in requests]

    monkeypatch.setattr(lm, "loglikelihoods", loglikelihoods)
    item = MultipleChoiceItem("q", "Q:", ("éé", "abc"), answer=1, target_delimiter=" ")
    (result,) = runner.score_multiple_choice(None, None, [item], 1, log=lambda _: None)
    assert (result["prediction"], result["prediction_norm"]) == (0, 1)
    assert result["score_norm"] == 1.0
