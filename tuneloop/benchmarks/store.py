"""The benchmark store: ``s3://<artifacts>/benchmarks/<name>/<version>.jsonl`` + table Benchmarks.

A version is the content hash of the validated items (``tuneloop.evaluation.benchmarks``),
so it never changes once written: creating the same content again (even re-formatted)
returns the existing version and writes nothing. A file is validated before anything is
written; a bad one raises ``BenchmarkError`` naming the file, line and field.

Table Benchmarks: pk ``name``, sk ``version``; attributes ``item_count``, ``kind``,
``tags`` (map tag → number of items), ``created_at`` (ISO-8601), ``sha256`` (of the stored
file's bytes), ``s3_uri``. Clients are passed in or created lazily (``tuneloop.aws``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneloop import aws
from tuneloop.evaluation.benchmarks import Benchmark
from tuneloop.evaluation.custom import NAME_PATTERN, RESERVED_NAMES, load_benchmark_file
from tuneloop.evaluation.errors import BenchmarkError

LATEST = "latest"
KEY_PREFIX = "benchmarks/"
# A version may be named by a prefix of its hash, as git names commits.
MIN_VERSION_PREFIX = 8
_HEX = re.compile(r"^[0-9a-f]+$")


class BenchmarkNotFoundError(LookupError):
    """No such benchmark, or no version matching the requested one."""


@dataclass(frozen=True)
class BenchmarkVersion:
    name: str
    version: str
    item_count: int
    kind: str
    tags: dict[str, int] = field(default_factory=dict)
    created_at: str = ""
    sha256: str = ""
    s3_uri: str = ""

    @property
    def key(self) -> str:
        return version_key(self.name, self.version)

    def to_item(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "item_count": self.item_count,
            "kind": self.kind,
            "tags": dict(self.tags),
            "created_at": self.created_at,
            "sha256": self.sha256,
            "s3_uri": self.s3_uri,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> BenchmarkVersion:
        return cls(
            name=str(item["name"]),
            version=str(item["version"]),
            item_count=int(item.get("item_count", 0)),
            kind=str(item.get("kind", "")),
            tags={str(k): int(v) for k, v in dict(item.get("tags") or {}).items()},
            created_at=str(item.get("created_at", "")),
            sha256=str(item.get("sha256", "")),
            s3_uri=str(item.get("s3_uri", "")),
        )


def version_key(name: str, version: str) -> str:
    return f"{KEY_PREFIX}{name}/{version}.jsonl"


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise BenchmarkError(name, None, None, "a benchmark name is letters, digits, '_' or '-'")
    if name in RESERVED_NAMES:
        raise BenchmarkError(name, None, None, f"{name!r} is a built-in benchmark name")


def check_version_spec(spec: str) -> None:
    """``latest`` or a (prefix of a) sha256 in lowercase hex."""
    if spec == LATEST:
        return
    if not _HEX.match(spec) or not MIN_VERSION_PREFIX <= len(spec) <= 64:
        raise ValueError(
            f"version {spec!r}: 'latest' or {MIN_VERSION_PREFIX}..64 lowercase hex characters "
            "of a benchmark version"
        )


def validate_bytes(name: str, data: bytes, source: str) -> Benchmark:
    """Validate ``data`` as benchmark ``name``; errors name ``source`` (the user's file)."""
    check_name(name)
    with tempfile.TemporaryDirectory(prefix="tuneloop-benchmark-") as tmp:
        # The validator names the suite after the file: give it the benchmark's name.
        path = Path(tmp) / f"{name}.jsonl"
        path.write_bytes(data)
        try:
            return load_benchmark_file(path)
        except BenchmarkError as exc:
            raise BenchmarkError(source, exc.line, exc.field, exc.problem) from exc


def tag_counts(benchmark: Benchmark) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for item in benchmark.items:
        counts.update(set(item.tags))
    return dict(sorted(counts.items()))


class BenchmarkStore:
    """Benchmarks of one deployment: table ``table`` and bucket ``bucket``."""

    def __init__(self, *, table: str, bucket: str, s3: Any = None, dynamodb: Any = None) -> None:
        self.table_name = table
        self.bucket = bucket
        self._s3 = s3
        self._dynamodb = dynamodb

    @property
    def s3(self) -> Any:
        return self._s3 if self._s3 is not None else aws.s3()

    @property
    def dynamodb(self) -> Any:
        return self._dynamodb if self._dynamodb is not None else aws.dynamodb()

    def create(
        self, name: str, path: Path, *, now: datetime | None = None
    ) -> tuple[BenchmarkVersion, bool]:
        """Store ``path`` as a version of ``name``: (the version, whether it is new)."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BenchmarkError(path.name, None, None, f"cannot read the file ({exc})") from exc
        return self.create_from_bytes(name, data, source=path.name, now=now)

    def create_from_bytes(
        self, name: str, data: bytes, *, source: str, now: datetime | None = None
    ) -> tuple[BenchmarkVersion, bool]:
        benchmark = validate_bytes(name, data, source)
        existing = self.find(name, benchmark.version)
        if existing is not None:
            return existing, False
        created = BenchmarkVersion(
            name=name,
            version=benchmark.version,
            item_count=len(benchmark.items),
            kind=benchmark.kind,
            tags=tag_counts(benchmark),
            created_at=(now or datetime.now(UTC)).isoformat(),
            sha256=hashlib.sha256(data).hexdigest(),
            s3_uri=f"s3://{self.bucket}/{version_key(name, benchmark.version)}",
        )
        # The object first: a table entry never points at a missing file.
        self.s3.put_object(
            Bucket=self.bucket,
            Key=created.key,
            Body=data,
            ContentType="application/jsonl",
            Metadata={"benchmark-version": created.version, "sha256": created.sha256},
        )
        try:
            self.dynamodb.put_item(
                TableName=self.table_name,
                Item=_serialize(created.to_item()),
                ConditionExpression="attribute_not_exists(version)",
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            # A concurrent create of the same content won; versions are immutable.
            found = self.find(name, benchmark.version)
            assert found is not None
            return found, False
        return created, True

    def find(self, name: str, version: str) -> BenchmarkVersion | None:
        response = self.dynamodb.get_item(
            TableName=self.table_name,
            Key={"name": {"S": name}, "version": {"S": version}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return BenchmarkVersion.from_item(_deserialize(item)) if item else None

    def versions(self, name: str) -> list[BenchmarkVersion]:
        """Every version of ``name``, newest first (empty if none)."""
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#name = :name",
            "ExpressionAttributeNames": {"#name": "name"},
            "ExpressionAttributeValues": {":name": {"S": name}},
            "ConsistentRead": True,
        }
        found = [
            BenchmarkVersion.from_item(_deserialize(i)) for i in _pages(self.dynamodb.query, query)
        ]
        return sorted(found, key=lambda v: (v.created_at, v.version), reverse=True)

    def all_versions(self) -> list[BenchmarkVersion]:
        scan: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": True}
        found = [
            BenchmarkVersion.from_item(_deserialize(i)) for i in _pages(self.dynamodb.scan, scan)
        ]
        return sorted(found, key=lambda v: (v.name, v.created_at, v.version))

    def latest_by_name(self) -> dict[str, tuple[BenchmarkVersion, int]]:
        """``{name: (latest version, number of versions)}``, sorted by name."""
        out: dict[str, tuple[BenchmarkVersion, int]] = {}
        for version in self.all_versions():  # ascending created_at within a name
            count = out[version.name][1] + 1 if version.name in out else 1
            out[version.name] = (version, count)
        return out

    def resolve(self, name: str, spec: str = LATEST) -> BenchmarkVersion:
        """The version ``spec`` (``latest`` or a unique hash prefix) of ``name``."""
        check_version_spec(spec)
        versions = self.versions(name)
        if not versions:
            raise BenchmarkNotFoundError(f"benchmark {name!r}: no versions in {self.table_name}")
        if spec == LATEST:
            return versions[0]
        matches = [v for v in versions if v.version.startswith(spec)]
        if len(matches) != 1:
            problem = "matches no version" if not matches else "is ambiguous (give more characters)"
            raise BenchmarkNotFoundError(f"benchmark {name!r}: version {spec!r} {problem}")
        return matches[0]

    def read(self, version: BenchmarkVersion) -> bytes:
        body = self.s3.get_object(Bucket=self.bucket, Key=version.key)["Body"].read()
        return bytes(body)


def _pages(call: Any, request: dict[str, Any]) -> Iterable[dict[str, Any]]:
    while True:
        page = call(**request)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def _serialize(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in item.items()}


def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}
