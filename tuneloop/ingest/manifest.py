"""Drop manifests: how to read the data files of a drop (docs/ingestion.md, "Drop manifest").

A JSON object at ``drops/<dataset>/<folder...>/_manifest.json`` governs every data file in
that same folder; a sidecar ``<file>.manifest.json`` governs that one file and wins. All
fields are optional: ``dataset``, ``source``, ``format``, ``field_mapping``, ``tags``.
Manifest files are not data. A data file read before its manifest arrived used the
defaults, so a manifest is uploaded first.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.ingest.events import dataset_name_problem
from tuneloop.ingest.parsing import FORMAT_ALIASES

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FOLDER_MANIFEST = "_manifest.json"
SIDECAR_SUFFIX = ".manifest.json"
# Canonical record fields a field_mapping may fill.
CANONICAL_FIELDS = ("text", "messages", "prompt", "completion", "metadata")
KNOWN_FIELDS = ("dataset", "source", "format", "field_mapping", "tags")
MAX_MANIFEST_BYTES = 64 * 1024
MAX_NAME_CHARS = 128
MAX_TAGS = 50


class ManifestError(ValueError):
    """A manifest that cannot govern its data files: each becomes one rejection at line 0."""

    def __init__(self, key: str, field: str | None, detail: str, reason: str) -> None:
        where = f"drop manifest {key}" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {detail}")
        self.key = key
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class DropManifest:
    key: str = ""  # the S3 key it was read from; "" when no manifest applies (defaults)
    dataset: str | None = None
    source: str | None = None
    format: str | None = None
    field_mapping: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def record_tags(self) -> tuple[str, ...]:
        """Tags the manifest adds to each record's features."""
        source = (f"source:{self.source}",) if self.source else ()
        return (*source, *self.tags)


DEFAULTS = DropManifest()


def is_manifest_key(key: str) -> bool:
    name = posixpath.basename(key)
    return name == FOLDER_MANIFEST or name.endswith(SIDECAR_SUFFIX)


def manifest_keys(data_key: str) -> tuple[str, str]:
    """(sidecar, folder manifest) keys that may govern ``data_key``, in precedence order."""
    return data_key + SIDECAR_SUFFIX, posixpath.join(posixpath.dirname(data_key), FOLDER_MANIFEST)


def _name(key: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(key, name, "must be a non-empty string", "invalid_manifest")
    if len(value) > MAX_NAME_CHARS or any(ord(char) < 32 for char in value):
        detail = f"must be at most {MAX_NAME_CHARS} printable characters"
        raise ManifestError(key, name, detail, "invalid_manifest")
    return value.strip()


def parse_manifest(body: bytes | str, *, key: str, dataset: str) -> DropManifest:
    """Validate a manifest's content; ``dataset`` is the one its data files' path names."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            detail = f"not valid UTF-8 (byte {exc.start})"
            raise ManifestError(key, None, detail, "invalid_manifest") from exc
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise ManifestError(key, None, detail, "invalid_manifest") from exc
    except RecursionError:
        detail = "invalid JSON: nested deeper than the JSON parser allows"
        raise ManifestError(key, None, detail, "invalid_manifest") from None
    except ValueError as exc:  # e.g. an integer over Python's digit limit
        raise ManifestError(key, None, f"invalid JSON: {exc}", "invalid_manifest") from exc
    if not isinstance(value, dict):
        raise ManifestError(key, None, "must be a JSON object", "invalid_manifest")
    unknown = sorted(set(value) - set(KNOWN_FIELDS))
    if unknown:
        detail = f"unknown field; the fields are {', '.join(KNOWN_FIELDS)}"
        raise ManifestError(key, unknown[0], detail, "invalid_manifest")

    declared = value.get("dataset")
    if declared is not None:
        declared = _name(key, "dataset", declared)
        problem = dataset_name_problem(declared)
        if problem is not None:
            raise ManifestError(key, "dataset", problem, "invalid_dataset_name")
        if declared != dataset:
            detail = (
                f"is {declared!r} but the file is under drops/{dataset}/; move the file or "
                "correct the manifest"
            )
            raise ManifestError(key, "dataset", detail, "dataset_mismatch")
    source = _name(key, "source", value["source"]) if value.get("source") is not None else None
    file_format = value.get("format")
    if file_format is not None and (
        not isinstance(file_format, str) or file_format.lower() not in FORMAT_ALIASES
    ):
        detail = f"must be one of {', '.join(sorted(FORMAT_ALIASES))}, got {file_format!r}"
        raise ManifestError(key, "format", detail, "invalid_manifest")
    return DropManifest(
        key=key,
        dataset=declared,
        source=source,
        format=file_format.lower() if file_format else None,
        field_mapping=_field_mapping(key, value.get("field_mapping")),
        tags=_tags(key, value.get("tags")),
    )


def _field_mapping(key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        detail = 'must be an object of canonical field → source field, e.g. {"text": "body"}'
        raise ManifestError(key, "field_mapping", detail, "invalid_manifest")
    mapping: dict[str, str] = {}
    for canonical, source in value.items():
        where = f"field_mapping.{canonical}"
        if canonical not in CANONICAL_FIELDS:
            detail = f"unknown canonical field; use one of {', '.join(CANONICAL_FIELDS)}"
            raise ManifestError(key, where, detail, "invalid_manifest")
        mapping[canonical] = _name(key, where, source)
    return mapping


def _tags(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ManifestError(key, "tags", "must be a list of strings", "invalid_manifest")
    if len(value) > MAX_TAGS:
        detail = f"has {len(value)} tags; at most {MAX_TAGS}"
        raise ManifestError(key, "tags", detail, "invalid_manifest")
    return tuple(_name(key, f"tags[{index}]", tag) for index, tag in enumerate(value))


def load_manifest(
    bucket: str, data_key: str, *, dataset: str, s3: S3Client | None = None
) -> DropManifest:
    """The manifest governing ``data_key`` (sidecar, else folder), or the defaults.

    Raises ManifestError when the governing manifest is invalid.
    """
    client = s3 or aws.s3()
    for key in manifest_keys(data_key):
        try:
            response = client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes=0-{MAX_MANIFEST_BYTES}"
            )
            body = response["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in {"NoSuchKey", "404"}:
                continue
            if code != "InvalidRange":  # S3's answer for a range of an empty object
                raise
            body = b""
        if len(body) > MAX_MANIFEST_BYTES:
            detail = f"is larger than {MAX_MANIFEST_BYTES // 1024} KB"
            raise ManifestError(key, None, detail, "invalid_manifest")
        return parse_manifest(body, key=key, dataset=dataset)
    return DEFAULTS
