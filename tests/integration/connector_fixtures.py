"""moto resources for the connector tests: the raw bucket, the Control table, secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from tests.integration.aws_fixtures import aws_credentials
from tuneloop import aws

__all__ = ["ConnectorAws", "aws_credentials", "connector_aws"]


@dataclass(frozen=True)
class ConnectorAws:
    raw_bucket: str = "tuneloop-raw"
    control_table: str = "Control"

    def create_secret(self, name: str, value: str) -> str:
        return str(aws.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"])

    def keys(self, prefix: str = "drops/") -> list[str]:
        pages = (
            aws.s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.raw_bucket, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def data_keys(self) -> list[str]:
        return [k for k in self.keys() if k.endswith(".jsonl")]

    def records(self, key: str) -> list[dict[str, Any]]:
        body = aws.s3().get_object(Bucket=self.raw_bucket, Key=key)["Body"].read().decode()
        return [json.loads(line) for line in body.splitlines() if line]

    def all_records(self) -> list[dict[str, Any]]:
        return [record for key in self.data_keys() for record in self.records(key)]

    def state(self, name: str) -> dict[str, Any]:
        item = aws.table(self.control_table).get_item(Key={"key": f"connector#{name}"})
        return dict(item.get("Item") or {})


@pytest.fixture
def connector_aws(aws_credentials: None) -> Iterator[ConnectorAws]:
    with mock_aws():
        names = ConnectorAws()
        aws.s3().create_bucket(Bucket=names.raw_bucket)
        aws.dynamodb().create_table(
            TableName=names.control_table,
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield names
