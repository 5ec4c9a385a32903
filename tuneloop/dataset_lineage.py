"""What a run's data set leaves for the next run, so that run reads only what it needs.

Under ``s3://<curated>/datasets/<model_version>/lineage/`` (never read by the trainer):

- ``heldout.jsonl``: the run's held-out slice, one ``{"rank", "record_id", "dataset",
  "line"}`` per record, lowest held-out rank first. The next run's slice is the lowest
  ranks of this slice plus its new candidates (the cap only lowers the cut), so it never
  reads earlier records to hold some out.
- ``pool.jsonl``: the records this run added to the replay pool (its training records and
  the earlier records its cap released from the slice), ``{"rank", "record_id", "line"}``
  lowest replay rank first, so the next run's replay sample is a merge of sorted prefixes,
  read with S3 byte ranges.
- ``lineage.json``: ``watermark`` (drops completed up to it are in this data set),
  ``recent_drops`` (drop id -> completed_at of those within ``CONSISTENCY_MARGIN`` of the
  watermark, which a Drops index read may not have shown yet), ``pools`` (the pool files of
  this run and its ancestors, with their counts).
"""

from __future__ import annotations

import heapq
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from tuneloop import aws

LINEAGE_DIR = "lineage/"
RANGE_BYTES = 256 * 1024
"""Bytes per ranged GET of a pool file: a sample reads its prefix, not the whole file."""
CONSISTENCY_MARGIN = timedelta(minutes=5)
"""Drops index reads are eventually consistent: drops completed this close to a watermark
are checked by id, not by time."""
SPOOL_BYTES = 64 * 1024 * 1024


class Ranked(NamedTuple):
    """A record under one of the two hash ranks (``datasets.heldout_rank``/``replay_rank``)."""

    rank: float
    record_id: str
    dataset: str
    line: bytes  # the training line, UTF-8 JSON ending in a newline


@dataclass(frozen=True)
class PoolFile:
    key: str
    count: int


@dataclass(frozen=True)
class Lineage:
    watermark: str
    recent_drops: dict[str, str] = field(default_factory=dict)
    pools: tuple[PoolFile, ...] = ()

    @property
    def pool_count(self) -> int:
        return sum(pool.count for pool in self.pools)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "watermark": self.watermark,
                "recent_drops": self.recent_drops,
                "pools": [{"key": p.key, "count": p.count} for p in self.pools],
            },
            indent=2,
        ).encode("utf-8")


def recent(drops: dict[str, str], watermark: str) -> dict[str, str]:
    """The drops completed within ``CONSISTENCY_MARGIN`` before ``watermark``."""
    since = (datetime.fromisoformat(watermark) - CONSISTENCY_MARGIN).isoformat()
    return {drop_id: at for drop_id, at in sorted(drops.items()) if at > since}


def lineage_key(prefix: str, name: str) -> str:
    return f"{prefix}{LINEAGE_DIR}{name}"


def read_lineage(bucket: str, prefix: str) -> Lineage | None:
    """The lineage of the data set under ``prefix``; None for one prepared before lineage."""
    try:
        body = aws.s3().get_object(Bucket=bucket, Key=lineage_key(prefix, "lineage.json"))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise
    value = json.loads(body["Body"].read())
    return Lineage(
        watermark=str(value["watermark"]),
        recent_drops={str(k): str(v) for k, v in dict(value["recent_drops"]).items()},
        pools=tuple(PoolFile(str(p["key"]), int(p["count"])) for p in value["pools"]),
    )


def write_heldout(bucket: str, prefix: str, heldout: list[Ranked]) -> None:
    body = b"".join(
        (_json_line(entry.rank, entry.record_id, entry.line, dataset=entry.dataset))
        for entry in heldout
    )
    aws.s3().put_object(Bucket=bucket, Key=lineage_key(prefix, "heldout.jsonl"), Body=body)


def read_heldout(bucket: str, prefix: str) -> list[Ranked]:
    body = aws.s3().get_object(Bucket=bucket, Key=lineage_key(prefix, "heldout.jsonl"))
    return [_parse(raw) for raw in body["Body"].read().splitlines() if raw]


class PoolWriter:
    """Spools a run's pool records, then uploads them sorted by replay rank. Records the
    champion already had (``earlier``) are also this run's own replay candidates."""

    def __init__(self) -> None:
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        # rank, record id, offset, length, earlier: one small tuple per record
        self._index: list[tuple[float, str, int, int, bool]] = []

    @property
    def earlier_count(self) -> int:
        return sum(1 for entry in self._index if entry[4])

    def add(self, rank: float, record_id: str, line: bytes, *, earlier: bool) -> None:
        encoded = _json_line(rank, record_id, line)
        self._spool.seek(0, 2)
        self._index.append((rank, record_id, self._spool.tell(), len(encoded), earlier))
        self._spool.write(encoded)

    def earlier(self) -> Iterator[Ranked]:
        """The earlier records, lowest rank first (read back from the spool on demand)."""
        for _, _, offset, length, earlier in sorted(self._index):
            if earlier:
                self._spool.seek(offset)
                yield _parse(self._spool.read(length))

    def upload(self, bucket: str, key: str) -> PoolFile:
        self._index.sort()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as ordered:
            for _, _, offset, length, _ in self._index:
                self._spool.seek(offset)
                ordered.write(self._spool.read(length))
            ordered.seek(0)
            aws.s3().upload_fileobj(ordered, bucket, key)
        self._spool.close()
        return PoolFile(key, len(self._index))


def read_pool(bucket: str, key: str) -> Iterator[Ranked]:
    """A pool file's records in rank order, fetched ``RANGE_BYTES`` at a time on demand."""
    s3 = aws.s3()
    start, carry = 0, b""
    while True:
        try:
            chunk = s3.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{start + RANGE_BYTES - 1}"
            )["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                chunk = b""  # the previous range ended the file exactly
            else:
                raise
        start += len(chunk)
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        for raw in lines:
            if raw:
                yield _parse(raw)
        if len(chunk) < RANGE_BYTES:
            if carry:
                yield _parse(carry)
            return


def lowest(sources: Iterable[Iterator[Ranked]], count: int) -> list[Ranked]:
    """The ``count`` lowest-ranked records of sorted sources, reading only as far as needed."""
    if count <= 0:
        return []
    picked: list[Ranked] = []
    for entry in heapq.merge(*sources):
        picked.append(entry)
        if len(picked) == count:
            break
    return picked


def _json_line(rank: float, record_id: str, line: bytes, **extra: Any) -> bytes:
    value = {"rank": rank, "record_id": record_id, **extra, "line": line.decode("utf-8")}
    return (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")


def _parse(raw: bytes) -> Ranked:
    value = json.loads(raw)
    return Ranked(
        float(value["rank"]),
        str(value["record_id"]),
        str(value.get("dataset", "")),
        str(value["line"]).encode("utf-8"),
    )
