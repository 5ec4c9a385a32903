"""The Evaluate job under the SageMaker container contract (docs/contracts.md).

Inputs: channel ``candidate`` (``model.tar.gz``, or an already extracted model folder),
channel ``benchmarks`` (custom ``*.jsonl`` and lm-eval task ``*.yaml``, optional), channel
``heldout`` (training-format ``*.jsonl`` for the held-out perplexity suite, optional), the
task YAMLs shipped beside the entry point (``tasks/``), hyperparameters
``champion_model_data`` (S3 URI of the champion's ``model.tar.gz``, or ``""``),
``compare_base`` (``true``: with no champion, also score the candidate's base model, role
``base``, so that a first fine-tune is compared with what it was tuned from; default false),
``mmlu_subset_size`` (``0`` skips MMLU, ``all`` takes every question), ``mmlu_num_fewshot``
(solved examples per MMLU prompt, default 0), ``seed`` and
``batch_size``. Output: ``SM_OUTPUT_DATA_DIR/evaluation.json``; on failure the reason goes
to ``SM_OUTPUT_DIR/failure`` and the exit code is 1.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneloop.evaluation.benchmarks import Benchmark
from tuneloop.evaluation.custom import load_custom_benchmarks
from tuneloop.evaluation.errors import BenchmarkError, EvaluationInputError
from tuneloop.evaluation.harness import find_task_files, load_tasks
from tuneloop.evaluation.mmlu import load_mmlu
from tuneloop.evaluation.perplexity import HeldoutSet, load_heldout

REPORT_FILE = "evaluation.json"
MODEL_ARCHIVE = "model.tar.gz"
_MODEL_MARKERS = ("config.json", "tuneloop_model.json")
Log = Callable[[str], None]


def _log(message: str) -> None:
    print(message, flush=True)  # flushed: SageMaker streams stdout to CloudWatch


@dataclass(frozen=True)
class EvalSettings:
    champion_model_data: str = ""
    compare_base: bool = False  # with no champion: score the base model too (role "base")
    mmlu_subset_size: int | None = 100  # None: the whole test set
    seed: int = 0
    batch_size: int = 8
    mmlu_num_fewshot: int = 0  # solved examples per prompt (lm-eval's MMLU leaderboard: 5)


@dataclass(frozen=True)
class JobPaths:
    candidate: Path
    benchmarks: Path
    output_data: Path
    output: Path
    heldout: Path | None = None
    tasks: Path | None = None  # lm-eval task YAMLs shipped with the job

    @classmethod
    def from_env(cls, environ: Mapping[str, str], tasks: Path | None = None) -> JobPaths:
        return cls(
            candidate=Path(environ.get("SM_CHANNEL_CANDIDATE", "/opt/ml/input/data/candidate")),
            benchmarks=Path(environ.get("SM_CHANNEL_BENCHMARKS", "/opt/ml/input/data/benchmarks")),
            output_data=Path(environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")),
            output=Path(environ.get("SM_OUTPUT_DIR", "/opt/ml/output")),
            heldout=Path(environ.get("SM_CHANNEL_HELDOUT", "/opt/ml/input/data/heldout")),
            tasks=tasks,
        )


def read_hyperparameters(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """hyperparameters.json < ``SM_HPS`` < command line (``--name value`` or ``--name=value``)."""
    values: dict[str, Any] = {}
    config_dir = Path(environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    for source_name, load in (
        ("hyperparameters.json", lambda: _read_json_file(config_dir / "hyperparameters.json")),
        ("SM_HPS", lambda: json.loads(environ.get("SM_HPS") or "{}")),
    ):
        try:
            loaded = load()
        except ValueError as exc:
            raise EvaluationInputError(f"{source_name} is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise EvaluationInputError(f"{source_name} must hold a JSON object")
        values.update(loaded)
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--"):
            raise EvaluationInputError(f"unexpected command-line argument {arg!r}")
        if "=" in arg:
            name, value = arg[2:].split("=", 1)
            index += 1
        else:
            if index + 1 >= len(args):
                raise EvaluationInputError(f"hyperparameter {arg} has no value")
            name, value = arg[2:], args[index + 1]
            index += 2
        values[name] = value
    return values


def _read_json_file(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def parse_settings(hyperparameters: Mapping[str, Any]) -> EvalSettings:
    """Typed settings; ``EvaluationInputError`` naming a malformed hyperparameter."""
    defaults = EvalSettings()

    def integer(name: str, default: int, minimum: int) -> int:
        raw = hyperparameters.get(name, default)
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise EvaluationInputError(
                f"hyperparameter {name}={raw!r}: expected an integer"
            ) from None
        if value < minimum:
            raise EvaluationInputError(f"hyperparameter {name}={raw!r}: must be >= {minimum}")
        return value

    raw_size = hyperparameters.get("mmlu_subset_size", defaults.mmlu_subset_size)
    size: int | None
    if str(raw_size).strip().lower() == "all":
        size = None
    else:
        assert defaults.mmlu_subset_size is not None
        size = integer("mmlu_subset_size", defaults.mmlu_subset_size, 0)
    champion = hyperparameters.get("champion_model_data", "")
    if champion is None:
        champion = ""
    raw_compare = str(hyperparameters.get("compare_base", "false")).strip().lower()
    if raw_compare not in ("true", "false"):
        raise EvaluationInputError(
            f"hyperparameter compare_base={raw_compare!r}: expected true or false"
        )
    return EvalSettings(
        champion_model_data=str(champion).strip(),
        compare_base=raw_compare == "true",
        mmlu_subset_size=size,
        seed=integer("seed", defaults.seed, 0),
        batch_size=integer("batch_size", defaults.batch_size, 1),
        mmlu_num_fewshot=integer("mmlu_num_fewshot", defaults.mmlu_num_fewshot, 0),
    )


def load_benchmarks(
    settings: EvalSettings,
    benchmarks_dir: Path | None,
    tasks_dir: Path | None = None,
    heldout: HeldoutSet | None = None,
) -> list[Benchmark]:
    """MMLU, lm-eval task YAMLs (``tasks_dir``, then the channel), then custom JSONL."""
    benchmarks: list[Benchmark] = []
    if settings.mmlu_subset_size != 0:
        benchmarks.append(
            load_mmlu(
                settings.mmlu_subset_size, settings.seed, num_fewshot=settings.mmlu_num_fewshot
            )
        )
    task_files = find_task_files([tasks_dir, benchmarks_dir])
    tasks, task_data = load_tasks(task_files, benchmarks_dir)
    benchmarks.extend(tasks)
    benchmarks.extend(load_custom_benchmarks(benchmarks_dir, exclude=task_data))
    names: set[str] = {heldout.name} if heldout is not None else set()
    for bench in benchmarks:
        if bench.name in names:
            raise BenchmarkError(
                bench.name, None, None, "two benchmarks (task YAML or JSONL) share this name"
            )
        names.add(bench.name)
    if not benchmarks and heldout is None:
        raise EvaluationInputError(
            "nothing to evaluate: mmlu_subset_size is 0 and the benchmarks and heldout "
            "channels are empty"
        )
    return benchmarks


def extract_model(archive: Path, dest: Path) -> Path:
    """Unpack a ``model.tar.gz``; the model folder is its root or its single top folder."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")  # refuses absolute paths and links out
    except (tarfile.TarError, OSError) as exc:
        raise EvaluationInputError(f"cannot extract {archive.name}: {exc}") from exc
    if any((dest / marker).is_file() for marker in _MODEL_MARKERS):
        return dest
    children = [child for child in dest.iterdir() if child.is_dir()]
    if len(children) == 1 and any((children[0] / m).is_file() for m in _MODEL_MARKERS):
        return children[0]
    return dest  # load_model_dir explains what is missing


def candidate_model_dir(channel: Path, workdir: Path) -> Path:
    """The candidate folder: ``model.tar.gz`` extracted, or the channel itself if unpacked."""
    if not channel.is_dir():
        raise EvaluationInputError(f"the candidate channel is missing ({channel.name})")
    archive = channel / MODEL_ARCHIVE
    if archive.is_file():
        return extract_model(archive, workdir / "candidate")
    if any((channel / marker).is_file() for marker in _MODEL_MARKERS):
        return channel
    raise EvaluationInputError(f"the candidate channel holds no {MODEL_ARCHIVE}")


def champion_model_dir(uri: str, workdir: Path) -> Path:
    """Download (``s3://``) or take (local path) the champion's archive, then extract it."""
    local = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    if uri.startswith("s3://"):
        archive = workdir / "champion.tar.gz"
        download_s3(uri, archive)
    elif local.is_dir():
        return local
    elif local.is_file():
        archive = local
    else:
        raise EvaluationInputError(
            f"hyperparameter champion_model_data={uri!r}: expected s3://bucket/key or a path"
        )
    return extract_model(archive, workdir / "champion")


def download_s3(uri: str, dest: Path) -> None:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise EvaluationInputError(f"malformed S3 URI {uri!r}")
    from botocore.exceptions import BotoCoreError, ClientError

    from tuneloop import aws  # imported here: boto3 is only needed for an S3 champion

    try:
        aws.s3().download_file(bucket, key, str(dest))  # lazy client: AWS_ENDPOINT_URL applies
    except (BotoCoreError, ClientError) as exc:
        raise EvaluationInputError(f"cannot download {uri}: {exc}") from exc


def evaluate_folder(
    model_dir: Path,
    benchmarks: Sequence[Benchmark],
    settings: EvalSettings,
    label: str,
    log: Log,
    heldout: HeldoutSet | None = None,
) -> dict[str, dict[str, Any]]:
    import torch

    from tuneloop.evaluation.runner import evaluate_model
    from tuneloop.models.loading import load_model_dir

    started = time.monotonic()
    torch.manual_seed(settings.seed)
    model: Any
    model, tokenizer = load_model_dir(model_dir)
    if torch.cuda.is_available():
        model = model.to("cuda")
    log(f"[{label}] loaded in {time.monotonic() - started:.1f}s")
    results = evaluate_model(
        model,
        tokenizer,
        benchmarks,
        batch_size=settings.batch_size,
        label=label,
        log=log,
        heldout=heldout,
    )
    del model
    gc.collect()  # free the candidate before the champion loads
    log(f"[{label}] evaluated in {time.monotonic() - started:.1f}s")
    return results


def run(settings: EvalSettings, paths: JobPaths, log: Log = _log) -> dict[str, Any]:
    """Evaluate candidate (and champion) on the same items; write and return the report."""
    from tuneloop.evaluation.runner import build_report
    from tuneloop.models.loading import root_base_dir

    heldout = load_heldout(paths.heldout)
    benchmarks = load_benchmarks(settings, paths.benchmarks, paths.tasks, heldout)
    for bench in benchmarks:
        log(f"benchmark {bench.name}: {len(bench.items)} items, version {bench.version[:12]}")
    report_settings: dict[str, Any] = asdict(settings)
    if heldout is None:
        report_settings["heldout_perplexity"] = "skipped: the heldout channel is missing or empty"
        log("heldout_perplexity: skipped (the heldout channel is missing or empty)")
    else:
        report_settings["heldout_perplexity"] = f"{len(heldout.records)} records"
        log(f"benchmark {heldout.name}: {len(heldout.records)} records, {heldout.version[:12]}")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="tuneloop-eval-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        candidate = candidate_model_dir(paths.candidate, workdir)
        champion = (
            champion_model_dir(settings.champion_model_data, workdir)
            if settings.champion_model_data
            else None
        )
        log(f"model archives ready in {time.monotonic() - started:.1f}s")
        base = root_base_dir(candidate) if champion is None and settings.compare_base else None
        roles = (("candidate", candidate), ("champion", champion), ("base", base))
        for role, model_dir in roles:
            if model_dir is not None:
                results[role] = evaluate_folder(model_dir, benchmarks, settings, role, log, heldout)
    report = build_report(benchmarks, results, settings=report_settings, heldout=heldout)
    paths.output_data.mkdir(parents=True, exist_ok=True)
    (paths.output_data / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {REPORT_FILE}")
    return report


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    tasks_dir: Path | None = None,
) -> int:
    """Run the job; 0 on success, 1 with ``SM_OUTPUT_DIR/failure`` written on failure."""
    env = os.environ if environ is None else environ
    paths = JobPaths.from_env(env, tasks_dir)
    started = time.monotonic()
    try:
        settings = parse_settings(read_hyperparameters(sys.argv[1:] if argv is None else argv, env))
        run(settings, paths)
    except ValueError as exc:  # bad input (benchmarks, hyperparameters, model folder)
        return _fail(paths, f"Evaluate failed: {exc}")
    except Exception as exc:
        traceback.print_exc()
        return _fail(paths, f"Evaluate failed: {type(exc).__name__}: {exc}")
    print(f"evaluation finished in {time.monotonic() - started:.1f}s", flush=True)
    return 0


def _fail(paths: JobPaths, message: str) -> int:
    print(message, file=sys.stderr, flush=True)
    try:
        paths.output.mkdir(parents=True, exist_ok=True)
        (paths.output / "failure").write_text(message + "\n")
    except OSError as exc:
        print(f"cannot write the failure file: {exc}", file=sys.stderr)
    return 1
