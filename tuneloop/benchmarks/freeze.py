"""Freeze the benchmark versions of one retrain run (called by PrepareDataset).

Each custom suite the gate policy names is resolved to one version — ``latest`` or the
suite's pinned ``version`` — through the Benchmarks table, and copied to
``s3://<artifacts>/runs/<model_version>/benchmarks/<name>.jsonl``. The Evaluate job reads
that prefix, so candidate and champion are scored on exactly these files, even if a new
version is created while the run is in flight.

Files put straight under ``benchmarks/`` (deployments that upload by hand, lm-eval task
YAMLs and their data) are copied into the run as they are, so the run keeps evaluating
them; a policy suite with no entry in the table is frozen from its ``benchmarks/<name>.jsonl``
with its content hash as the version (validated here, so a bad file fails the run before
training). With nothing to copy, the result is today's ``benchmarks/`` prefix. A built-in
suite (``mmlu``) is versioned by its package and is not frozen here; the evaluation report
carries its version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneloop.benchmarks.store import (
    KEY_PREFIX,
    LATEST,
    BenchmarkNotFoundError,
    BenchmarkStore,
    validate_bytes,
)
from tuneloop.evaluation.custom import RESERVED_NAMES
from tuneloop.gating.policy import GatePolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrozenBenchmarks:
    s3_uri: str
    versions: dict[str, str]
    sources: dict[str, str]

    def as_result(self) -> dict[str, Any]:
        """The PrepareDataset result fields."""
        return {"benchmarks_s3_uri": self.s3_uri, "benchmark_versions": dict(self.versions)}


def requested_suites(policy: GatePolicy) -> dict[str, str]:
    """``{suite: version spec}`` of the policy's custom (not built-in) suites."""
    return {s.name: s.version for s in policy.suites if s.name not in RESERVED_NAMES}


def run_prefix(model_version: str) -> str:
    return f"runs/{model_version}/benchmarks/"


def freeze_benchmarks(
    store: BenchmarkStore,
    *,
    model_version: str,
    suites: Mapping[str, str],
    hand_uploaded_too: bool = True,
) -> FrozenBenchmarks:
    """Resolve and copy every suite (and, with ``hand_uploaded_too``, the files put straight
    under ``benchmarks/``); raise if a pinned version does not exist."""
    bucket, s3 = store.bucket, store.s3
    prefix = run_prefix(model_version)
    hand_uploaded = _top_level_files(s3, bucket)
    if not hand_uploaded_too:
        hand_uploaded = {
            file: key
            for file, key in hand_uploaded.items()
            if file.removesuffix(".jsonl") in suites
        }
    sources: dict[str, str] = {}

    def copy(source_key: str, file: str) -> None:
        s3.copy_object(
            Bucket=bucket,
            Key=f"{prefix}{file}",
            CopySource={"Bucket": bucket, "Key": source_key},
        )
        sources[file] = f"s3://{bucket}/{source_key}"

    for file, key in sorted(hand_uploaded.items()):
        copy(key, file)
    versions: dict[str, str] = {}
    for name, spec in sorted(suites.items()):
        file = f"{name}.jsonl"
        if store.versions(name):
            version = store.resolve(name, spec)
            copy(version.key, file)  # replaces a hand-uploaded file of the same name
            versions[name] = version.version
        elif file in hand_uploaded:
            uri = f"s3://{bucket}/{hand_uploaded[file]}"
            data = s3.get_object(Bucket=bucket, Key=hand_uploaded[file])["Body"].read()
            version_id = validate_bytes(name, data, uri).version
            if spec != LATEST and not version_id.startswith(spec):
                raise BenchmarkNotFoundError(
                    f"benchmark {name!r}: the policy pins version {spec!r} but only {uri} "
                    f"(version {version_id[:12]}) exists"
                )
            versions[name] = version_id
        elif spec != LATEST:
            raise BenchmarkNotFoundError(
                f"benchmark {name!r}: the policy pins version {spec!r} but the Benchmarks "
                f"table {store.table_name} has no versions of it"
            )
        else:
            # The gate rejects a policy suite missing from the report, naming it.
            logger.warning("benchmark %s: no versions and no %s%s", name, KEY_PREFIX, file)
    if not sources:
        return FrozenBenchmarks(f"s3://{bucket}/{KEY_PREFIX}", {}, {})
    return FrozenBenchmarks(f"s3://{bucket}/{prefix}", versions, sources)


def _top_level_files(s3: Any, bucket: str) -> dict[str, str]:
    """``{file: key}`` directly under ``benchmarks/`` (not the store's ``<name>/`` folders)."""
    found: dict[str, str] = {}
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": KEY_PREFIX, "Delimiter": "/"}
    while True:
        page = s3.list_objects_v2(**request)
        for obj in page.get("Contents", []):
            file = str(obj["Key"])[len(KEY_PREFIX) :]
            if file:
                found[file] = str(obj["Key"])
        if not page.get("IsTruncated"):
            return found
        request["ContinuationToken"] = page["NextContinuationToken"]
