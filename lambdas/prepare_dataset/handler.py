"""PrepareDataset: export the stored records to this run's training set; find the champion.

Event: ``{"execution_name": str, "execution_arn": str}``. Result (``$.dataset``):
``{"model_version", "train_s3_uri", "dataset_s3_uri", "record_count", "dataset_sha256",
"champion_version", "champion_model_data", "benchmarks_s3_uri"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.datasets import DatasetLocations, prepare_dataset
from tuneloop.envmodel import load_env

logger = Logger()


@dataclass(frozen=True)
class Env:
    records_table: str
    control_table: str
    curated_bucket: str
    artifacts_bucket: str
    model_versions_table: str


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    result = prepare_dataset(
        execution_name=str(event["execution_name"]),
        execution_arn=str(event.get("execution_arn", "")),
        where=DatasetLocations(
            records_table=env.records_table,
            control_table=env.control_table,
            curated_bucket=env.curated_bucket,
            artifacts_bucket=env.artifacts_bucket,
            model_versions_table=env.model_versions_table,
        ),
    )
    logger.info("dataset prepared", extra={"dataset": result})
    return result
