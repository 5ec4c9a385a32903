"""Benchmark runs: one suite scored on one registered model version, as a SageMaker job.

The BenchmarkRun state machine (docs/contracts.md) runs ``prepare_run`` → the Evaluate job
the retrain run uses (``evaluate.py``, no champion) → ``record_run``. ``prepare_run`` finds
the version's model archive and freezes the suite's version under
``runs/<run id>/benchmarks/`` as a retrain run does; ``record_run`` reads the job's report
and appends the score, with its CI and the benchmark version, to the version item's
``benchmark_runs`` (a list of JSON strings, appended once per run however often the step is
retried). The console's score history shows them beside the gate's scores.

A run started by continuous evaluation (:mod:`tuneloop.watch.evaluation`) carries
``trigger: "scheduled"`` and the suite's ``baseline``; Prepare passes both on, and Record
adds the ``trigger`` and the ``regression_check`` against the gate-time score to the entry.
A model line's scheduled run also carries its ``model_line``, which Prepare passes on and
Record keeps on the entry (the Regression metric per line is published from it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.benchmarks.freeze import freeze_benchmarks
from tuneloop.benchmarks.store import LATEST, BenchmarkStore, check_name, check_version_spec
from tuneloop.gating.scores import scores_summary
from tuneloop.gating.service import read_report
from tuneloop.release.model_versions import get_version, now_iso
from tuneloop.watch.evaluation import SCHEDULED, Baseline, RegressionCheck, check_regression

MMLU = "mmlu"
"""The built-in suite: versioned by its package, not frozen (its subset size is a setting)."""


class BenchmarkRunError(ValueError):
    """The run cannot start or be recorded; the message says why."""


@dataclass(frozen=True)
class RunRequest:
    model_version: str
    suite: str
    version: str = LATEST

    @classmethod
    def parse(cls, event: dict[str, Any]) -> RunRequest:
        try:
            request = cls(
                model_version=str(event["model_version"]),
                suite=str(event["suite"]),
                version=str(event.get("version") or LATEST),
            )
        except KeyError as exc:
            raise BenchmarkRunError(f"benchmark run input: {exc.args[0]!r} is missing") from exc
        if request.suite != MMLU:
            check_name(request.suite)
            check_version_spec(request.version)
        return request


def scheduled_baseline(event: dict[str, Any]) -> Baseline | None:
    """The baseline of a run continuous evaluation started (None: a person's run)."""
    if event.get("trigger") != SCHEDULED:
        return None
    if not isinstance(event.get("baseline"), dict):
        raise BenchmarkRunError("scheduled benchmark run input: 'baseline' is missing")
    return Baseline.parse(event["baseline"])


def scheduled_line(event: dict[str, Any]) -> str:
    """The model line a scheduled run evaluates (``""``: the endpoint's model, or none)."""
    return str(event.get("model_line") or "") if event.get("trigger") == SCHEDULED else ""


def prepare_run(
    request: RunRequest,
    *,
    run_id: str,
    store: BenchmarkStore,
    model_versions_table: str,
    mmlu_subset_size: str,
    baseline: Baseline | None = None,
    model_line: str = "",
) -> dict[str, Any]:
    """The Evaluate job's inputs: the version's archive and the suite frozen for this run
    (and a scheduled run's ``baseline``, which Record compares the score with)."""
    item = get_version(model_versions_table, request.model_version)
    if item is None:
        raise BenchmarkRunError(f"no model version {request.model_version!r}")
    model_data = str(item.get("model_data_url") or "")
    if not model_data:
        raise BenchmarkRunError(
            f"model version {request.model_version} has no model archive yet "
            f"(status {item.get('status', '?')}): only trained versions can be benchmarked"
        )
    if request.suite == MMLU:
        frozen = freeze_benchmarks(store, model_version=run_id, suites={}, hand_uploaded_too=False)
        versions: dict[str, str] = {}
        subset = mmlu_subset_size
    else:
        # Pinned versions that do not exist raise BenchmarkNotFoundError, naming them.
        frozen = freeze_benchmarks(
            store,
            model_version=run_id,
            suites={request.suite: request.version},
            hand_uploaded_too=False,
        )
        if request.suite not in frozen.versions:
            raise BenchmarkRunError(
                f"no benchmark {request.suite!r} in {store.table_name} or under "
                f"s3://{store.bucket}/benchmarks/ (`tuneloop benchmarks list` shows them)"
            )
        versions, subset = frozen.versions, "0"
    prepared: dict[str, Any] = {
        "model_version": request.model_version,
        "suite": request.suite,
        "model_data": model_data,
        "benchmarks_s3_uri": frozen.s3_uri,
        "benchmark_versions": versions,
        "mmlu_subset_size": subset,
    }
    if baseline is not None:
        prepared.update(trigger=SCHEDULED, baseline=baseline.to_dict())
        if model_line:
            prepared["model_line"] = model_line
    return prepared


def record_run(
    prepared: dict[str, Any],
    evaluation: dict[str, Any],
    *,
    run_id: str,
    model_versions_table: str,
) -> dict[str, Any]:
    """Append the suite's score to the version item (once per ``run_id``) and return it."""
    report = read_report(aws.s3(), str(evaluation["output_path"]), str(evaluation["job_name"]))
    suite = str(prepared["suite"])
    summary = scores_summary(report, None).get(suite)
    if summary is None:
        raise BenchmarkRunError(f"the evaluation report of {evaluation['job_name']} has no {suite}")
    entry: dict[str, Any] = {
        "run_id": run_id,
        "suite": suite,
        **{k: (float(v) if not isinstance(v, str | int) else v) for k, v in summary.items()},
        "at": now_iso(),
        "job": str(evaluation["job_name"]),
    }
    baseline = scheduled_baseline(prepared)
    if baseline is not None:
        entry["trigger"] = SCHEDULED
        if scheduled_line(prepared):
            entry["model_line"] = scheduled_line(prepared)
        entry["regression_check"] = _regression_check(
            baseline, report, suite, str(entry.get("version") or "")
        ).to_dict()
    try:
        aws.table(model_versions_table).update_item(
            Key={"model_version": str(prepared["model_version"])},
            UpdateExpression=(
                "SET benchmark_runs = list_append(if_not_exists(benchmark_runs, :none), :entry) "
                "ADD benchmark_run_ids :run"
            ),
            ConditionExpression=(
                "attribute_exists(model_version) AND "
                "(attribute_not_exists(benchmark_run_ids) OR NOT contains(benchmark_run_ids, :id))"
            ),
            ExpressionAttributeValues={
                ":none": [],
                ":entry": [json.dumps(entry, sort_keys=True)],
                ":run": {run_id},
                ":id": run_id,
            },
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        item = get_version(model_versions_table, str(prepared["model_version"]))
        if item is None:
            raise BenchmarkRunError(f"model version {prepared['model_version']} is gone") from exc
    return entry


def _regression_check(
    baseline: Baseline, report: dict[str, Any], suite: str, version: str
) -> RegressionCheck:
    """The scheduled score on the baseline's metric (the gate's, which may not be the
    suite's primary one: acc_norm), against the gate-time score."""
    results = report.get("results")
    candidate = results.get("candidate") if isinstance(results, dict) else None
    result = candidate.get(suite) if isinstance(candidate, dict) else None
    raw = result.get(baseline.metric) if isinstance(result, dict) else None
    value = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    return check_regression(baseline, value, version)


def runs_of(item: dict[str, Any]) -> list[dict[str, Any]]:
    """A version item's benchmark runs, oldest first."""
    runs = []
    for text in item.get("benchmark_runs") or []:
        try:
            run = json.loads(str(text))
        except json.JSONDecodeError:
            continue
        if isinstance(run, dict):
            runs.append(run)
    return runs
