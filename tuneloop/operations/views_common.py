"""Helpers shared by the read models: plain values out of DynamoDB items, S3 documents."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws


def plain(value: Any) -> Any:
    """DynamoDB's Decimals and sets as JSON-friendly numbers and lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    return value


def dynamodb_value(value: Any) -> Any:
    """``value`` as DynamoDB takes it: no floats (numbers become Decimal), JSON otherwise."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def to_dict(view: Any) -> Any:
    """A view (dataclass, list of them, ...) as plain JSON-ready data."""
    if is_dataclass(view) and not isinstance(view, type):
        return plain(asdict(view))
    if isinstance(view, list | tuple):
        return [to_dict(v) for v in view]
    return plain(view)


def num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def scan_all(table_name: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a table (one paginated Scan)."""
    table = aws.table(table_name)
    while True:
        page = table.scan(**kwargs)
        for item in page.get("Items", []):
            yield plain(dict(item))
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket")


def read_json(uri: str) -> dict[str, Any] | None:
    """A JSON object in S3, or None when it does not exist (yet)."""
    if not uri.startswith("s3://"):
        return None
    bucket, key = split_uri(uri)
    try:
        body = aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def read_tar_json(uri: str, member_name: str) -> dict[str, Any] | None:
    """``member_name`` out of a job's ``output.tar.gz`` in S3, or None."""
    if not uri.startswith("s3://"):
        return None
    bucket, key = split_uri(uri)
    try:
        body = aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.lstrip("./") == member_name:
                    handle = tar.extractfile(member)
                    if handle is None:
                        return None
                    document = json.loads(handle.read().decode("utf-8"))
                    return document if isinstance(document, dict) else None
    except (tarfile.TarError, UnicodeDecodeError, ValueError):
        return None
    return None


def job_output_uri(model_data_url: str, job_name: str) -> str:
    """``<S3OutputPath>/<job>/output/output.tar.gz`` of a job that shares the training job's
    output path (``.../<train job>/output/model.tar.gz``)."""
    if not model_data_url.startswith("s3://") or not job_name:
        return ""
    marker = model_data_url.rfind("/output/")
    if marker < 0:
        return ""
    root = model_data_url[:marker].rsplit("/", 1)[0]
    return f"{root}/{job_name}/output/output.tar.gz"
