"""PrepareDataset: export every stored record into one run's training set.

The set is written as ``s3://<curated>/datasets/<model_version>/train.jsonl`` (one
``{"text"}`` or ``{"messages"}`` object per line) with ``manifest.json`` beside it.
Records are streamed page by page through a spooled temporary file, so memory stays flat.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tuneloop import aws
from tuneloop.control import read_production
from tuneloop.model_versions import TRAINING, now_iso

SPOOL_BYTES = 64 * 1024 * 1024


class EmptyDatasetError(RuntimeError):
    """There are no stored records to train on."""


@dataclass(frozen=True)
class DatasetLocations:
    records_table: str
    control_table: str
    curated_bucket: str
    artifacts_bucket: str
    model_versions_table: str


def training_line(item: dict[str, Any]) -> dict[str, Any]:
    """A Records item as a line of the training set."""
    if "messages" in item:
        return {"messages": json.loads(str(item["messages"]))}
    return {"text": str(item["text"])}


def prepare_dataset(
    *, execution_name: str, execution_arn: str, where: DatasetLocations
) -> dict[str, Any]:
    """Write the training set of run ``execution_name``; return the PrepareDataset result."""
    model_version = execution_name
    prefix = f"datasets/{model_version}/"
    dataset_s3_uri = f"s3://{where.curated_bucket}/{prefix}"
    train_s3_uri = f"{dataset_s3_uri}train.jsonl"
    digest = hashlib.sha256()
    per_dataset: Counter[str] = Counter()
    table = aws.table(where.records_table)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        scan: dict[str, Any] = {
            "ProjectionExpression": "record_id, dataset, #text, messages",
            "ExpressionAttributeNames": {"#text": "text"},
            "ConsistentRead": True,
        }
        while True:
            page = table.scan(**scan)
            for item in page.get("Items", []):
                line = json.dumps(training_line(dict(item)), ensure_ascii=False) + "\n"
                encoded = line.encode("utf-8")
                spool.write(encoded)
                digest.update(encoded)
                per_dataset[str(item.get("dataset", "default"))] += 1
            if "LastEvaluatedKey" not in page:
                break
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        record_count = sum(per_dataset.values())
        if record_count == 0:
            raise EmptyDatasetError(
                f"no stored records in table {where.records_table}: nothing to train "
                f"{model_version} on; drop data under s3://<raw bucket>/drops/ first"
            )
        spool.seek(0)
        aws.s3().upload_fileobj(spool, where.curated_bucket, f"{prefix}train.jsonl")

    dataset_sha256 = digest.hexdigest()
    manifest = {
        "model_version": model_version,
        "execution_arn": execution_arn,
        "train_s3_uri": train_s3_uri,
        "record_count": record_count,
        "sha256": dataset_sha256,
        "datasets": dict(sorted(per_dataset.items())),
        "created_at": now_iso(),
    }
    aws.s3().put_object(
        Bucket=where.curated_bucket,
        Key=f"{prefix}manifest.json",
        Body=json.dumps(manifest, indent=2).encode("utf-8"),
        ContentType="application/json",
    )

    production = read_production(where.control_table)
    champion_version = production.current.model_version if production else ""
    champion_model_data = production.current.model_data_url if production else ""
    _record_training(
        where.model_versions_table,
        model_version,
        {
            "execution_arn": execution_arn,
            "dataset_s3_uri": dataset_s3_uri,
            "train_s3_uri": train_s3_uri,
            "dataset_sha256": dataset_sha256,
            "record_count": record_count,
            "datasets": manifest["datasets"],
            "parent_version": champion_version,
        },
    )
    return {
        "model_version": model_version,
        "train_s3_uri": train_s3_uri,
        "dataset_s3_uri": dataset_s3_uri,
        "record_count": record_count,
        "dataset_sha256": dataset_sha256,
        "champion_version": champion_version,
        "champion_model_data": champion_model_data,
        "benchmarks_s3_uri": f"s3://{where.artifacts_bucket}/benchmarks/",
    }


def _record_training(table_name: str, model_version: str, lineage: dict[str, Any]) -> None:
    # Retried invocations may re-create the item while it is still "training"; any later
    # status means the run moved on, and this write would be stale.
    now = now_iso()
    aws.table(table_name).put_item(
        Item={
            "model_version": model_version,
            "status": TRAINING,
            **lineage,
            "created_at": now,
            "updated_at": now,
        },
        ConditionExpression="attribute_not_exists(model_version) OR #status = :training",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":training": TRAINING},
    )
