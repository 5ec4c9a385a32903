"""S3 objects of the raw bucket, read as streams or by byte range, never whole."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.ingest.reading import buffered

MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def head(bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return dict(aws.s3().head_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING:
            return None
        raise


@contextmanager
def open_range(
    bucket: str, key: str, start: int = 0, end: int | None = None
) -> Iterator[IO[bytes]]:
    """The bytes ``[start, end)`` of an object as a one-pass stream (the whole object by
    default); closed on exit."""
    arguments: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if start or end is not None:
        arguments["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
    body = aws.s3().get_object(**arguments)["Body"]
    try:
        yield buffered(body)
    finally:
        body.close()


class RangeFile(io.RawIOBase):
    """A seekable read-only view of an S3 object by ranged GETs (Parquet reads its footer
    first, then only the row groups it needs)."""

    def __init__(self, bucket: str, key: str, size: int) -> None:
        self.bucket = bucket
        self.key = key
        self.size = size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self.position + len(view), self.size)
        if end <= self.position:
            return 0
        response = aws.s3().get_object(
            Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{end - 1}"
        )
        data = response["Body"].read()
        view[: len(data)] = data
        self.position += len(data)
        return len(data)
