"""Counts what the cached clients (``tuneloop.aws``) read: DynamoDB items per table and S3
bytes per key prefix, through botocore's ``after-call`` events. Benchmarks and tests use it
to show what a step reads; nothing on AWS imports it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tuneloop import aws


@dataclass
class Reads:
    items: Counter[str] = field(default_factory=Counter)  # table -> items read
    s3_bytes: Counter[str] = field(default_factory=Counter)  # top-level key prefix -> bytes
    requests: Counter[str] = field(default_factory=Counter)  # operation -> calls
    dynamodb_bytes: Counter[str] = field(default_factory=Counter)  # table -> response bytes

    @staticmethod
    def on_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # after-call has no request parameters: carry the ones counted in its context.
        context["counted"] = {name: params.get(name, "") for name in ("TableName", "Key")}

    def on_dynamodb(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        table = str(context.get("counted", {}).get("TableName", ""))
        self.dynamodb_bytes[table] += len(http_response.content or b"")
        if "ScannedCount" in parsed:  # Scan, Query: items read, kept or filtered out
            self.items[table] += int(parsed["ScannedCount"])
        elif "Item" in parsed:
            self.items[table] += 1
        for name, found in dict(parsed.get("Responses", {})).items():  # BatchGetItem
            self.items[name] += len(found)

    def on_s3(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "ContentLength" in parsed and "Body" in parsed:
            key = str(context.get("counted", {}).get("Key", ""))
            self.s3_bytes[key.split("/", 1)[0]] += int(parsed["ContentLength"])

    def on_call(self, model: Any, **_: Any) -> None:
        self.requests[f"{model.service_model.service_name}.{model.name}"] += 1


@contextmanager
def counting() -> Iterator[Reads]:
    """Count the reads of clients created inside the block (the client cache is reset)."""
    reads = Reads()
    events = aws._session().events
    hooks = (
        ("provide-client-params", reads.on_params),
        ("after-call.dynamodb", reads.on_dynamodb),
        ("after-call.s3", reads.on_s3),
        ("after-call", reads.on_call),
    )
    for name, hook in hooks:
        events.register(name, hook)
    aws.reset()
    try:
        yield reads
    finally:
        for name, hook in hooks:
            events.unregister(name, hook)
        aws.reset()
