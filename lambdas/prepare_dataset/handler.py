"""PrepareDataset: export the stored records to this run's training, held-out and replay
sets (``tuneloop.datasets``: incremental from the drops completed since the champion's data
set, see docs/training.md); find the champion; freeze the run's benchmark versions.

Event: ``{"execution_name": str, "execution_arn": str, "input": <the run's input>}``; the
input's ``model_line`` names the model line the run trains (``MODEL_LINES``; none without
lines): only its datasets are read, its production version is the champion and its gate
policy names the suites to freeze. Result (``$.dataset``):
``{"model_version", "model_line", "train_s3_uri", "dataset_s3_uri", "heldout_s3_uri",
"replay_s3_uri", "record_count", "heldout_count", "replay_count", "dataset_sha256",
"champion_version", "champion_model_data", "benchmarks_s3_uri", "benchmark_versions"}``.
The custom suites of the policy in force are resolved through ``BENCHMARKS_TABLE`` and
copied to ``runs/<model_version>/benchmarks/`` (``tuneloop.benchmarks.freeze``). First, an ``s3://``
base model is sized from its config.json against ``TRAINING_CAPACITY`` (Train's instance
type and settings; ``tuneloop.planning.run_check``): under ``enforce`` a plan that cannot fit
fails the run here, naming what to change, before the GPU job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop import aws
from tuneloop.benchmarks.freeze import freeze_benchmarks, requested_suites
from tuneloop.benchmarks.store import BenchmarkStore
from tuneloop.datasets import DatasetLocations, SplitSettings, prepare_dataset
from tuneloop.envmodel import load_env
from tuneloop.operations.gate_policy import run_policy
from tuneloop.planning.run_check import TrainingCapacitySettings, check_s3_base_model
from tuneloop.run_line import requested_line, run_line

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@dataclass(frozen=True)
class Env:
    records_table: str
    drops_table: str
    control_table: str
    curated_bucket: str
    artifacts_bucket: str
    model_versions_table: str
    benchmarks_table: str
    gate_policy: str
    training_capacity: str
    """``TrainingCapacitySettings.to_json()`` of the stage."""
    # Defaults are SplitSettings': share of records held out (by a hash of the record id),
    # its cap, earlier records exported for replay per new record.
    heldout_fraction: float = SplitSettings.heldout_fraction
    heldout_max_records: int = SplitSettings.heldout_max_records
    replay_ratio: float = SplitSettings.replay_ratio
    # ModelLines.to_json() of the stage ("[]": no lines, every record trains the one model).
    model_lines: str = "[]"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    model_version = str(event["execution_name"])
    line = run_line(env.model_lines, requested_line(event))
    # Before anything is exported: a run whose Train cannot fit ends here.
    check_training_capacity(TrainingCapacitySettings.from_json(env.training_capacity))
    # Frozen first: a pinned version that does not exist fails the run before any export.
    frozen = freeze_benchmarks(
        BenchmarkStore(table=env.benchmarks_table, bucket=env.artifacts_bucket),
        model_version=model_version,
        suites=requested_suites(run_policy(env.control_table, line, env.gate_policy)),
    )
    logger.info("benchmarks frozen", extra={"benchmarks": frozen.versions})
    result = prepare_dataset(
        execution_name=model_version,
        execution_arn=str(event.get("execution_arn", "")),
        where=DatasetLocations(
            records_table=env.records_table,
            drops_table=env.drops_table,
            control_table=env.control_table,
            curated_bucket=env.curated_bucket,
            artifacts_bucket=env.artifacts_bucket,
            model_versions_table=env.model_versions_table,
        ),
        split=SplitSettings(env.heldout_fraction, env.heldout_max_records, env.replay_ratio),
        line=line,
    )
    result.update(frozen.as_result())
    for metric, key in (
        ("DatasetRecords", "record_count"),
        ("HeldoutRecords", "heldout_count"),
        ("ReplayRecords", "replay_count"),
    ):
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=int(result[key]))
    logger.info("dataset prepared", extra={"dataset": result})
    return result


def check_training_capacity(settings: TrainingCapacitySettings) -> None:
    """Log the planner's verdict on an ``s3://`` base model (raises under ``enforce``)."""
    verdict = check_s3_base_model(settings, aws.s3())
    if verdict is None:
        return
    details = {"base_model": settings.base_model, "verdict": verdict.status}
    if verdict.fits:
        logger.info(verdict.message, extra=details)
    else:  # does not fit under "warn", or the model's size is unknown
        logger.warning(verdict.message, extra=details)
