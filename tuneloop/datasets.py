"""PrepareDataset: export the stored records into one run's training, held-out and replay sets.

Under ``s3://<curated>/datasets/<model_version>/`` (one ``{"text"}`` or ``{"messages"}``
object per line, ``manifest.json`` beside them):

- ``heldout/heldout.jsonl``: records whose ``heldout_rank`` (a hash of the record id) is
  below ``heldout_fraction``, at most ``heldout_max_records`` of them (lowest ranks first).
  Never trained on: as records accumulate the cap only lowers the cut, so a record can
  leave the slice (and be trained on from then) but never enter it after training on it.
- ``train.jsonl``: the other records; with a champion, only those ingested after the
  champion's dataset was prepared (the champion's adapter already learned the earlier ones).
- ``replay/replay.jsonl``: with a champion, a deterministic sample (lowest ``replay_rank``)
  of the earlier records, ``ceil(replay_ratio * new records)`` of them, for the trainer's
  ``replay`` channel. Without a champion (or no earlier records) the file is empty.

Records are streamed page by page through spooled temporary files, so memory stays flat
(only the held-out candidates and one float per earlier record are held).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any

from tuneloop import aws
from tuneloop.release import model_versions
from tuneloop.release.control import read_production
from tuneloop.release.model_versions import now_iso

SPOOL_BYTES = 64 * 1024 * 1024
_HELDOUT_SALT = "tuneloop-heldout/1:"
_REPLAY_SALT = "tuneloop-replay/1:"


class EmptyDatasetError(RuntimeError):
    """There are no stored records to train on."""


@dataclass(frozen=True)
class DatasetLocations:
    records_table: str
    control_table: str
    curated_bucket: str
    artifacts_bucket: str
    model_versions_table: str


@dataclass(frozen=True)
class SplitSettings:
    heldout_fraction: float = 0.05
    heldout_max_records: int = 500
    replay_ratio: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError(f"HELDOUT_FRACTION must be in [0, 1), got {self.heldout_fraction}")
        if self.heldout_max_records < 0:
            raise ValueError(f"HELDOUT_MAX_RECORDS must be >= 0, got {self.heldout_max_records}")
        if self.replay_ratio < 0:
            raise ValueError(f"REPLAY_RATIO must be >= 0, got {self.replay_ratio}")


def _rank(salt: str, record_id: str) -> float:
    """A uniform number in [0, 1) fixed by the record id (stable across runs and hosts)."""
    return int(hashlib.sha256((salt + record_id).encode()).hexdigest()[:16], 16) / 2**64


def heldout_rank(record_id: str) -> float:
    return _rank(_HELDOUT_SALT, record_id)


def replay_rank(record_id: str) -> float:
    return _rank(_REPLAY_SALT, record_id)


def training_line(item: dict[str, Any]) -> dict[str, Any]:
    """A Records item as a line of the training set."""
    if "body_s3_uri" in item:
        # A body over DynamoDB's item limit is stored in S3 (docs/contracts.md, Records).
        bucket, _, key = str(item["body_s3_uri"]).removeprefix("s3://").partition("/")
        body = aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        return dict(json.loads(body))
    if "messages" in item:
        return {"messages": json.loads(str(item["messages"]))}
    return {"text": str(item["text"])}


def prepare_dataset(
    *,
    execution_name: str,
    execution_arn: str,
    where: DatasetLocations,
    split: SplitSettings | None = None,
) -> dict[str, Any]:
    """Write the data sets of run ``execution_name``; return the PrepareDataset result."""
    split = split or SplitSettings()
    model_version = execution_name
    prefix = f"datasets/{model_version}/"
    dataset_s3_uri = f"s3://{where.curated_bucket}/{prefix}"
    train_s3_uri = f"{dataset_s3_uri}train.jsonl"
    production = read_production(where.control_table)
    champion_version = production.current.model_version if production else ""
    champion_model_data = production.current.model_data_url if production else ""
    # Records ingested up to the champion's own export are already in its adapter.
    trained_until = _prepared_at(where.model_versions_table, champion_version)
    digest = hashlib.sha256()
    per_dataset: Counter[str] = Counter()
    heldout: list[tuple[float, bytes, str, bool, str]] = []
    earlier_ranks: list[float] = []
    table = aws.table(where.records_table)
    with (
        tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool,
        tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as earlier,
    ):
        scan: dict[str, Any] = {
            "ProjectionExpression": (
                "record_id, dataset, #text, messages, body_s3_uri, ingested_at"
            ),
            "ExpressionAttributeNames": {"#text": "text"},
            "ConsistentRead": True,
        }
        while True:
            page = table.scan(**scan)
            for item in page.get("Items", []):
                record_id = str(item["record_id"])
                line = json.dumps(training_line(dict(item)), ensure_ascii=False) + "\n"
                encoded = line.encode("utf-8")
                dataset = str(item.get("dataset", "default"))
                rank = heldout_rank(record_id)
                old = bool(trained_until) and str(item.get("ingested_at", "")) <= trained_until
                if rank < split.heldout_fraction:
                    heldout.append((rank, encoded, dataset, old, record_id))
                elif old:
                    earlier_ranks.append(_spool_earlier(earlier, record_id, encoded))
                else:
                    spool.write(encoded)
                    digest.update(encoded)
                    per_dataset[dataset] += 1
            if "LastEvaluatedKey" not in page:
                break
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # Over the cap: the highest-ranked candidates are trained on instead.
        heldout.sort()
        for _, encoded, dataset, old, record_id in heldout[split.heldout_max_records :]:
            if old:
                earlier_ranks.append(_spool_earlier(earlier, record_id, encoded))
                continue
            spool.write(encoded)
            digest.update(encoded)
            per_dataset[dataset] += 1
        heldout = heldout[: split.heldout_max_records]
        record_count = sum(per_dataset.values())
        if record_count == 0:
            raise EmptyDatasetError(
                f"no stored records left to train {model_version} on in table "
                f"{where.records_table} (held out: {len(heldout)}, already in the champion: "
                f"{len(earlier_ranks)}); drop data under s3://<raw bucket>/drops/ first"
            )
        spool.seek(0)
        aws.s3().upload_fileobj(spool, where.curated_bucket, f"{prefix}train.jsonl")
        replay_count = min(len(earlier_ranks), math.ceil(split.replay_ratio * record_count))
        cut = sorted(earlier_ranks)[replay_count - 1] if replay_count else -1.0
        earlier.seek(0)
        replay_body = _replay_lines(earlier, cut)
    heldout_body = b"".join(entry[1] for entry in heldout)
    s3 = aws.s3()
    s3.put_object(
        Bucket=where.curated_bucket, Key=f"{prefix}heldout/heldout.jsonl", Body=heldout_body
    )
    s3.put_object(Bucket=where.curated_bucket, Key=f"{prefix}replay/replay.jsonl", Body=replay_body)

    dataset_sha256 = digest.hexdigest()
    split_counts = {
        "heldout_count": len(heldout),
        "replay_count": replay_count,
        "earlier_count": len(earlier_ranks),
    }
    manifest = {
        "model_version": model_version,
        "execution_arn": execution_arn,
        "train_s3_uri": train_s3_uri,
        "record_count": record_count,
        "sha256": dataset_sha256,
        "datasets": dict(sorted(per_dataset.items())),
        **split_counts,
        "heldout_sha256": hashlib.sha256(heldout_body).hexdigest(),
        "trained_until": trained_until,
        "split": {
            "heldout_fraction": split.heldout_fraction,
            "heldout_max_records": split.heldout_max_records,
            "replay_ratio": split.replay_ratio,
        },
        "created_at": now_iso(),
    }
    s3.put_object(
        Bucket=where.curated_bucket,
        Key=f"{prefix}manifest.json",
        Body=json.dumps(manifest, indent=2).encode("utf-8"),
        ContentType="application/json",
    )
    model_versions.start_training(
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
            **split_counts,
        },
    )
    return {
        "model_version": model_version,
        "train_s3_uri": train_s3_uri,
        "dataset_s3_uri": dataset_s3_uri,
        "heldout_s3_uri": f"{dataset_s3_uri}heldout/",
        "replay_s3_uri": f"{dataset_s3_uri}replay/",
        "record_count": record_count,
        "heldout_count": len(heldout),
        "replay_count": replay_count,
        "dataset_sha256": dataset_sha256,
        "champion_version": champion_version,
        "champion_model_data": champion_model_data,
        "benchmarks_s3_uri": f"s3://{where.artifacts_bucket}/benchmarks/",
    }


def _spool_earlier(earlier: IO[bytes], record_id: str, encoded: bytes) -> float:
    rank = replay_rank(record_id)
    earlier.write(f"{rank!r}\t".encode() + encoded)
    return rank


def _replay_lines(earlier: IO[bytes], cut: float) -> bytes:
    """The spooled earlier records whose replay rank is at most ``cut``."""
    picked: list[bytes] = []
    for raw in earlier:
        rank, _, line = raw.partition(b"\t")
        if float(rank) <= cut:
            picked.append(line)
    return b"".join(picked)


def _prepared_at(table_name: str, champion_version: str) -> str:
    """When the champion's data set was exported ("" without a champion or lineage)."""
    if not champion_version:
        return ""
    item = (
        aws.table(table_name)
        .get_item(Key={"model_version": champion_version}, ConsistentRead=True)
        .get("Item")
    )
    return str(item.get("created_at", "")) if item else ""
