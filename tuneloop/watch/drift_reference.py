"""The drift check's reference: prompts of the training data of the model in production.

The production version comes from the Control table (``production``); its data set from its
version item's ``dataset_s3_uri`` (PrepareDataset's ``s3://<curated>/datasets/<version>/``).
A version's adapter was trained on top of its parent's, so the data it has learned from is
its own ``train.jsonl`` *and* its ancestors'. The lineage (:mod:`tuneloop.dataset_lineage`)
lists the replay pool files of the version and every ancestor, each sorted by a hash rank
of the record id; merging their lowest ranks is a uniform sample of everything trained on,
and each file is read with S3 byte ranges only as far as the sample needs. A data set
prepared before lineage existed falls back to the first records of its ``train.jsonl``, read
the same way (a prefix, so a sample of its earliest drops).

A record's prompt is its user side: the user turns of a ``messages`` record, one per line,
as the capture reader takes them from a chat request (:func:`tuneloop.watch.capture.user_text`).
A ``text`` record (a document trained on as a whole) has no prompt and is skipped: compared
with questions people ask, documents would always look like drift.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.dataset_lineage import RANGE_BYTES, read_lineage, read_pool
from tuneloop.release.control import read_production
from tuneloop.release.model_versions import get_version
from tuneloop.watch.capture import user_text

SCAN_FACTOR = 4
"""At most ``SCAN_FACTOR x sample`` records are read, however many of them have no prompt."""
LINEAGE, TRAIN_FILE = "lineage", "train.jsonl"


class DriftReferenceError(RuntimeError):
    """The production version's data set cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Reference:
    """Up to ``sample`` prompts of ``model_version``'s training data."""

    model_version: str
    dataset_s3_uri: str
    texts: list[str]
    source: str  # LINEAGE (a uniform sample of all it learned) or TRAIN_FILE (a prefix)
    records_read: int
    without_prompt: int  # text records read and skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "dataset_s3_uri": self.dataset_s3_uri,
            "source": self.source,
            "prompts": len(self.texts),
            "records_read": self.records_read,
            "without_prompt": self.without_prompt,
        }


def record_prompt(record: Mapping[str, Any]) -> str:
    """The user side of a training record ("" for a ``text`` record)."""
    if "messages" in record:
        return user_text(record["messages"])
    prompt = record.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def production_reference(
    *, control_table: str, model_versions_table: str, curated_bucket: str, sample: int
) -> Reference | None:
    """The reference of the version in production; None when nothing is in production."""
    production = read_production(control_table)
    if production is None:
        return None
    version = production.current.model_version
    item = get_version(model_versions_table, version) or {}
    uri = str(item.get("dataset_s3_uri") or f"s3://{curated_bucket}/datasets/{version}/")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if bucket != curated_bucket or not prefix.startswith("datasets/"):
        raise DriftReferenceError(
            f"version {version}'s data set {uri} is not under s3://{curated_bucket}/datasets/: "
            "the drift check reads training data only there"
        )
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    return read_reference(curated_bucket, prefix, sample, model_version=version)


def read_reference(bucket: str, prefix: str, sample: int, *, model_version: str) -> Reference:
    """Up to ``sample`` prompts of the data set under ``prefix`` (``datasets/<version>/``)."""
    lineage = read_lineage(bucket, prefix)
    if lineage is not None and lineage.pools:
        pools = [read_pool(bucket, pool.key) for pool in lineage.pools]
        lines: Iterator[bytes] = (entry.line for entry in heapq.merge(*pools))
        source = LINEAGE
    else:
        lines = ranged_lines(bucket, f"{prefix}{TRAIN_FILE}")
        source = TRAIN_FILE
    texts: list[str] = []
    read = skipped = 0
    where = f"s3://{bucket}/{prefix}"
    for line in lines:
        read += 1
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DriftReferenceError(f"{where}: record {read} is not JSON ({exc})") from exc
        prompt = record_prompt(record) if isinstance(record, dict) else ""
        if prompt.strip():
            texts.append(prompt)
        else:
            skipped += 1
        if len(texts) >= sample or read >= SCAN_FACTOR * sample:
            break
    return Reference(model_version, where, texts, source, read, skipped)


def ranged_lines(bucket: str, key: str) -> Iterator[bytes]:
    """The lines of an object, fetched ``RANGE_BYTES`` at a time as they are consumed."""
    s3 = aws.s3()
    start, carry = 0, b""
    while True:
        try:
            chunk = s3.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{start + RANGE_BYTES - 1}"
            )["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "InvalidRange":
                chunk = b""  # the previous range ended the object exactly (or it is empty)
            elif code in {"NoSuchKey", "404"}:
                raise DriftReferenceError(f"s3://{bucket}/{key} does not exist") from exc
            else:
                raise
        start += len(chunk)
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        yield from (line for line in lines if line.strip())
        if len(chunk) < RANGE_BYTES:
            if carry.strip():
                yield carry
            return
