"""BenchmarkRun: the two Lambda steps of a benchmark run (tuneloop/benchmarks/runs.py).

Event ``{"step": "prepare", "run_id", "request": {"model_version", "suite", "version"}}``
→ the Evaluate job's inputs ``{"model_version", "suite", "model_data", "benchmarks_s3_uri",
"benchmark_versions", "mmlu_subset_size"}``; event ``{"step": "record", "run_id",
"prepared", "evaluation": {"job_name", "output_path"}}`` → the recorded score. A scheduled
run's score (continuous evaluation) also goes to the ``TuneLoop/Evaluation`` metrics,
with its ``model_line`` (a model line's run) on the entry and on a per-line ``Regression``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.benchmarks.runs import (
    BenchmarkRunError,
    RunRequest,
    prepare_run,
    record_run,
    scheduled_baseline,
    scheduled_line,
)
from tuneloop.benchmarks.store import BenchmarkStore
from tuneloop.envmodel import load_env
from tuneloop.watch.evaluation import RegressionCheck, publish

logger = Logger()
tracer = Tracer()


@dataclass(frozen=True)
class Env:
    artifacts_bucket: str
    benchmarks_table: str
    model_versions_table: str
    mmlu_subset_size: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    run_id = str(event.get("run_id") or "")
    if not run_id:
        raise BenchmarkRunError("benchmark run step: 'run_id' is missing")
    step = event.get("step")
    if step == "prepare":
        request = dict(event.get("request") or {})
        prepared = prepare_run(
            RunRequest.parse(request),
            run_id=run_id,
            store=BenchmarkStore(table=env.benchmarks_table, bucket=env.artifacts_bucket),
            model_versions_table=env.model_versions_table,
            mmlu_subset_size=env.mmlu_subset_size,
            baseline=scheduled_baseline(request),
            model_line=scheduled_line(request),
        )
        logger.info("benchmark run prepared", extra={"run_id": run_id, "prepared": prepared})
        return prepared
    if step == "record":
        entry = record_run(
            dict(event["prepared"]),
            dict(event["evaluation"]),
            run_id=run_id,
            model_versions_table=env.model_versions_table,
        )
        logger.info("benchmark run recorded", extra={"run_id": run_id, "score": entry})
        if entry.get("regression_check"):
            check = RegressionCheck(**entry["regression_check"])
            publish(
                check, str(event["prepared"]["model_version"]), str(entry.get("model_line") or "")
            )
        return entry
    raise BenchmarkRunError(f"benchmark run step {step!r}: expected 'prepare' or 'record'")
