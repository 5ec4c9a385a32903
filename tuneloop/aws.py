"""Lazily created, cached boto3 clients.

Clients are built on first use, never at import time, so that moto's ``mock_aws`` and
``AWS_ENDPOINT_URL`` (the local platform) apply to them. The cache key includes the region
and the endpoint URL, so changing either in the environment yields a fresh client; tests
call ``reset()`` between cases. Handlers reuse clients across warm invocations.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient


def _settings() -> tuple[str | None, str | None]:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return region, os.environ.get("AWS_ENDPOINT_URL")


@cache
def _session() -> boto3.session.Session:
    # One session: its loader caches the service models, which makes new clients cheap.
    return boto3.session.Session()


@cache
def _client(service: str, region: str | None, endpoint_url: str | None) -> Any:
    # boto3 reads AWS_ENDPOINT_URL itself; it is part of the key only to invalidate the cache.
    return _session().client(service, region_name=region)  # type: ignore[call-overload]


@cache
def _dynamodb_resource(region: str | None, endpoint_url: str | None) -> Any:
    return _session().resource("dynamodb", region_name=region)


def client(service: str) -> Any:
    """A cached client for ``service`` in the current region and endpoint."""
    return _client(service, *_settings())


def s3() -> S3Client:
    return client("s3")


def dynamodb() -> DynamoDBClient:
    return client("dynamodb")


def sagemaker() -> SageMakerClient:
    return client("sagemaker")


def stepfunctions() -> SFNClient:
    return client("stepfunctions")


def sns() -> SNSClient:
    return client("sns")


def table(name: str) -> Table:
    """A DynamoDB Table resource (native Python values in and out)."""
    return _dynamodb_resource(*_settings()).Table(name)


def reset() -> None:
    """Forget every cached client (tests: a new moto backend or a new endpoint).

    The session stays: it holds only the service models and the credentials, which do
    not change within a process.
    """
    _client.cache_clear()
    _dynamodb_resource.cache_clear()
