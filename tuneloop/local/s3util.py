"""Small S3 helpers for the local platform (clients reach the emulator via AWS_ENDPOINT_URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3

from tuneloop.local.iam.credentials import Credentials


def s3_client(credentials: Credentials | None = None) -> Any:
    """A client with ``credentials`` (a role's session), else this process's own."""
    if credentials is None:
        make: Any = boto3.client
        return make("s3")
    return credentials.client("s3")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def download_object(client: Any, bucket: str, key: str, destination: Path) -> None:
    """Stream one object to ``destination``. A GetObject, not boto3's ``download_file``:
    that one starts with a HeadObject, whose 403 has no body, so a refusal would read
    "Forbidden" instead of AWS's message naming the caller, the action and the object."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    with open(destination, "wb") as out:
        for chunk in body.iter_chunks(chunk_size=1 << 20):
            out.write(chunk)


def download_prefix(uri: str, target: Path, client: Any = None) -> list[Path]:
    """Download every object under an S3 prefix (or the single object it names)."""
    bucket, prefix = parse_s3_uri(uri)
    client = client or s3_client()
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            download_object(client, bucket, key, destination)
            written.append(destination)
    return written


def upload_file(path: Path, uri: str, client: Any = None) -> None:
    bucket, key = parse_s3_uri(uri)
    (client or s3_client()).upload_file(str(path), bucket, key)
