"""PrepareDataset: export the stored records into one run's training, held-out and replay sets.

Under ``s3://<curated>/datasets/<model_version>/`` (one ``{"text"}`` or ``{"messages"}``
object per line, ``manifest.json`` beside them, ``lineage/`` for the next run):

- ``heldout/heldout.jsonl``: records whose ``heldout_rank`` (a hash of the record id) is
  below ``heldout_fraction``, at most ``heldout_max_records`` of them (lowest ranks first).
  Never trained on: as records accumulate the cap only lowers the cut, so a record can
  leave the slice (and be trained on from then) but never enter it after training on it.
- ``train.jsonl``: the other records; with a champion, only those added after the
  champion's data set (the champion's adapter already learned the earlier ones).
- ``replay/replay.jsonl``: with a champion, the earlier records with the lowest
  ``replay_rank``, ``ceil(replay_ratio * new records)`` of them (lowest rank first), for
  the trainer's ``replay`` channel. Without a champion (or no earlier records) it is empty.

Two ways to read, one selection (tests/integration/test_prepare_dataset_incremental.py):

- **incremental** (the default): the new records are those of the drops completed since
  the champion's watermark (``tuneloop.dataset_drops``: Drops' ``by_month`` index and the
  drops' curated copies), the held-out candidates are the champion's slice plus the new
  ones, and the replay sample is merged from the sorted pool files of the champion's
  lineage (``tuneloop.dataset_lineage``). Reads grow with new + held-out + replay records,
  not with the history; the Records table is not read.
- **scan**: every Records item, when the champion's data set was prepared before lineage
  existed; its run writes a lineage holding the whole pool, so the next run is incremental.

For a model line (``line``; docs/training.md, "Model lines: one run per line") both read
only the records and drops of the line's datasets, and the champion is the line's
production item (``production#<line>``): its lineage holds the line's records only.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from tuneloop import aws
from tuneloop.dataset_drops import completed_drops, curated_records
from tuneloop.dataset_lineage import (
    CONSISTENCY_MARGIN,
    Lineage,
    PoolWriter,
    Ranked,
    lineage_key,
    lowest,
    read_heldout,
    read_lineage,
    read_pool,
    recent,
    write_heldout,
)
from tuneloop.model_line_settings import ModelLineSettings
from tuneloop.release import model_versions
from tuneloop.release.control import production_key, read_production
from tuneloop.release.model_versions import now_iso

SPOOL_BYTES = 64 * 1024 * 1024
_HELDOUT_SALT = "tuneloop-heldout/1:"
_REPLAY_SALT = "tuneloop-replay/1:"
INCREMENTAL = "incremental"
SCAN = "scan"


class EmptyDatasetError(RuntimeError):
    """There are no stored records to train on."""


def _scope(line: ModelLineSettings | None) -> str:
    """What a run reads, for its messages: a line and its datasets, or every record."""
    if line is None:
        return ""
    return f" of model line {line.name!r} (datasets: {', '.join(line.datasets)})"


@dataclass(frozen=True)
class DatasetLocations:
    records_table: str
    control_table: str
    curated_bucket: str
    artifacts_bucket: str
    model_versions_table: str
    drops_table: str


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


@dataclass
class _Selection:
    """One run's records as they are read: the training spool, the held-out candidates and
    the records joining the replay pool (``earlier``: those the champion already had)."""

    split: SplitSettings
    train: IO[bytes]
    pool: PoolWriter = field(default_factory=PoolWriter)
    digest: Any = field(default_factory=hashlib.sha256)
    per_dataset: Counter[str] = field(default_factory=Counter)
    candidates: list[tuple[Ranked, bool]] = field(default_factory=list)
    drops: dict[str, str] = field(default_factory=dict)
    read_drops: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The drops this run read, with their record counts: the manifest's ``drops``."""

    def add(self, record_id: str, dataset: str, line: bytes, *, earlier: bool) -> None:
        rank = heldout_rank(record_id)
        if rank < self.split.heldout_fraction:
            self.candidates.append((Ranked(rank, record_id, dataset, line), earlier))
        else:
            self._keep(record_id, dataset, line, earlier=earlier)

    def _keep(self, record_id: str, dataset: str, line: bytes, *, earlier: bool) -> None:
        self.pool.add(replay_rank(record_id), record_id, line, earlier=earlier)
        if not earlier:
            self.train.write(line)
            self.digest.update(line)
            self.per_dataset[dataset] += 1

    def heldout(self) -> list[Ranked]:
        """The lowest-ranked candidates up to the cap; the rest are trained on (or join the
        pool, when the champion already had them)."""
        self.candidates.sort()
        cap = self.split.heldout_max_records
        for entry, earlier in self.candidates[cap:]:
            self._keep(entry.record_id, entry.dataset, entry.line, earlier=earlier)
        return [entry for entry, _ in self.candidates[:cap]]


def prepare_dataset(
    *,
    execution_name: str,
    execution_arn: str,
    where: DatasetLocations,
    split: SplitSettings | None = None,
    read: str = "",
    line: ModelLineSettings | None = None,
) -> dict[str, Any]:
    """Write the data sets of run ``execution_name``; return the PrepareDataset result.

    ``read`` forces ``"scan"`` or ``"incremental"`` (the benchmark and the tests compare
    them); by default the run is incremental unless the champion has no lineage. ``line``:
    the model line the run trains (its datasets only, its champion); None: every record."""
    split = split or SplitSettings()
    model_version = execution_name
    prefix = f"datasets/{model_version}/"
    dataset_s3_uri = f"s3://{where.curated_bucket}/{prefix}"
    train_s3_uri = f"{dataset_s3_uri}train.jsonl"
    production = read_production(where.control_table, production_key(line.name if line else None))
    datasets = frozenset(line.datasets) if line else None
    champion_version = production.current.model_version if production else ""
    champion_model_data = production.current.model_data_url if production else ""
    champion = _version_item(where.model_versions_table, champion_version)
    # Records ingested up to the champion's own export are already in its adapter.
    trained_until = str(champion.get("created_at", ""))
    lineage = _champion_lineage(where.curated_bucket, champion)
    read = read or (SCAN if champion_version and lineage is None else INCREMENTAL)
    if read not in {SCAN, INCREMENTAL}:
        raise ValueError(f"read must be {SCAN!r} or {INCREMENTAL!r}, got {read!r}")
    # Drops completed up to here are in this data set.
    watermark = now_iso()
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        chosen = _Selection(split, spool)
        if read == SCAN:
            earlier_pools: list[Iterator[Ranked]] = []
            earlier_count = _scan(chosen, where.records_table, trained_until, datasets)
            # The scan read the whole pool: its lineage starts afresh.
            lineage = Lineage(watermark=watermark)
            _note_recent_drops(chosen, where.drops_table, watermark, datasets)
        else:
            earlier_pools = [read_pool(where.curated_bucket, p.key) for p in _pools(lineage)]
            earlier_count = _incremental(chosen, where, lineage, watermark, champion, datasets)
        heldout = chosen.heldout()
        earlier_count += chosen.pool.earlier_count
        record_count = sum(chosen.per_dataset.values())
        if record_count == 0:
            raise EmptyDatasetError(
                f"no stored records{_scope(line)} left to train {model_version} on ({read} "
                "read of table "
                f"{where.records_table} / drops in {where.drops_table}; held out: "
                f"{len(heldout)}, already in the champion: {earlier_count}); drop data under "
                "s3://<raw bucket>/drops/"
                + (f"<one of {', '.join(line.datasets)}>/" if line else "")
                + " first"
            )
        spool.seek(0)
        aws.s3().upload_fileobj(spool, where.curated_bucket, f"{prefix}train.jsonl")
    replay_count = min(earlier_count, math.ceil(split.replay_ratio * record_count))
    replay = lowest([*earlier_pools, chosen.pool.earlier()], replay_count)
    pool_file = chosen.pool.upload(where.curated_bucket, lineage_key(prefix, "pool.jsonl"))
    inherited = () if read == SCAN else _pools(lineage)
    write_heldout(where.curated_bucket, prefix, heldout)
    s3 = aws.s3()
    s3.put_object(
        Bucket=where.curated_bucket,
        Key=lineage_key(prefix, "lineage.json"),
        Body=Lineage(
            watermark=watermark,
            recent_drops=recent(chosen.drops, watermark),
            pools=(*inherited, pool_file),
        ).to_json(),
    )
    heldout_body = b"".join(entry.line for entry in heldout)
    s3.put_object(
        Bucket=where.curated_bucket, Key=f"{prefix}heldout/heldout.jsonl", Body=heldout_body
    )
    s3.put_object(
        Bucket=where.curated_bucket,
        Key=f"{prefix}replay/replay.jsonl",
        Body=b"".join(entry.line for entry in replay),
    )

    dataset_sha256 = chosen.digest.hexdigest()
    split_counts = {
        "heldout_count": len(heldout),
        "replay_count": replay_count,
        "earlier_count": earlier_count,
    }
    manifest = {
        "model_version": model_version,
        **({"model_line": line.name} if line else {}),
        "execution_arn": execution_arn,
        "train_s3_uri": train_s3_uri,
        "record_count": record_count,
        "sha256": dataset_sha256,
        "datasets": dict(sorted(chosen.per_dataset.items())),
        **split_counts,
        "heldout_sha256": hashlib.sha256(heldout_body).hexdigest(),
        "trained_until": trained_until,
        "read": read,
        # What this run added (an incremental run's new drops; the console and incidents
        # compare versions by them). A full scan reads records, not drops: none listed.
        "drops": dict(sorted(chosen.read_drops.items())),
        "watermark": watermark,
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
            **({"model_line": line.name} if line else {}),
        },
    )
    return {
        "model_version": model_version,
        # Always present: the later states read $.dataset.model_line ("" without lines).
        "model_line": line.name if line else "",
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


def _scan(
    chosen: _Selection,
    records_table: str,
    trained_until: str,
    datasets: frozenset[str] | None = None,
) -> int:
    """Every Records item (of ``datasets``, when given) into ``chosen``; the earlier records
    are those ingested up to ``trained_until``. Returns 0: the scan's pool holds every
    earlier record itself."""
    table = aws.table(records_table)
    scan: dict[str, Any] = {
        "ProjectionExpression": "record_id, dataset, #text, messages, body_s3_uri, ingested_at",
        "ExpressionAttributeNames": {"#text": "text"},
        "ConsistentRead": True,
    }
    while True:
        page = table.scan(**scan)
        for item in page.get("Items", []):
            dataset = str(item.get("dataset", "default"))
            if datasets is not None and dataset not in datasets:
                continue  # another line's record (or one no line trains on)
            line = json.dumps(training_line(dict(item)), ensure_ascii=False) + "\n"
            earlier = bool(trained_until) and str(item.get("ingested_at", "")) <= trained_until
            chosen.add(str(item["record_id"]), dataset, line.encode("utf-8"), earlier=earlier)
        if "LastEvaluatedKey" not in page:
            return 0
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _incremental(
    chosen: _Selection,
    where: DatasetLocations,
    lineage: Lineage | None,
    watermark: str,
    champion: dict[str, Any],
    datasets: frozenset[str] | None = None,
) -> int:
    """The champion's held-out slice and the records of the drops (of ``datasets``, when
    given) completed since its watermark into ``chosen``; returns the size of the
    champion's replay pool."""
    after = ""
    skip: frozenset[str] = frozenset()
    if lineage is not None:
        champion_prefix = _prefix_of(str(champion["dataset_s3_uri"]))
        for entry in read_heldout(where.curated_bucket, champion_prefix):
            chosen.candidates.append((entry, True))
        after = (datetime.fromisoformat(lineage.watermark) - CONSISTENCY_MARGIN).isoformat()
        skip = frozenset(lineage.recent_drops)
        chosen.drops.update(lineage.recent_drops)
    for drop in completed_drops(
        where.drops_table, after=after, until=watermark, skip=skip, datasets=datasets
    ):
        chosen.drops[drop.drop_id] = drop.completed_at
        records = 0
        for record in curated_records(where.curated_bucket, drop):
            chosen.add(record.record_id, record.dataset, record.line, earlier=False)
            records += 1
        if records:  # a drop whose records were all quarantined added nothing
            chosen.read_drops[drop.drop_id] = {"records": records, "dataset": drop.dataset}
    return lineage.pool_count if lineage is not None else 0


def _note_recent_drops(
    chosen: _Selection, drops_table: str, watermark: str, datasets: frozenset[str] | None
) -> None:
    """The drops a scan saw complete within the margin, so the next run skips them."""
    since = (datetime.fromisoformat(watermark) - CONSISTENCY_MARGIN).isoformat()
    for drop in completed_drops(drops_table, after=since, until=watermark, datasets=datasets):
        chosen.drops[drop.drop_id] = drop.completed_at


def _pools(lineage: Lineage | None) -> tuple[Any, ...]:
    return lineage.pools if lineage is not None else ()


def _prefix_of(dataset_s3_uri: str) -> str:
    return dataset_s3_uri.removeprefix("s3://").partition("/")[2]


def _champion_lineage(bucket: str, champion: dict[str, Any]) -> Lineage | None:
    uri = str(champion.get("dataset_s3_uri", ""))
    return read_lineage(bucket, _prefix_of(uri)) if uri else None


def _version_item(table_name: str, champion_version: str) -> dict[str, Any]:
    """The champion's ModelVersions item ({} without a champion or lineage)."""
    if not champion_version:
        return {}
    item = (
        aws.table(table_name)
        .get_item(Key={"model_version": champion_version}, ConsistentRead=True)
        .get("Item")
    )
    return dict(item) if item else {}
