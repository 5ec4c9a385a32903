"""The types shared by policy evaluation and its wiring into the local platform.

A request is an ``ApiCall`` made by a ``Caller``; ``authorize`` turns it into every
authorization AWS makes for it, each a ``Decision``. A ``PolicyStore`` answers where the
policies live (moto's backends on the local platform).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Caller:
    """Who makes a call, as AWS sees it."""

    # The assumed-role session ARN "arn:aws:sts::123456789012:assumed-role/ROLE/SESSION",
    # "arn:aws:iam::123456789012:root" for the account's admin (the operator, the deployer),
    # or the service principal itself, e.g. "events.amazonaws.com".
    arn: str
    account: str
    role_arn: str | None = None  # "arn:aws:iam::123456789012:role/ROLE" for an assumed-role session
    service: str | None = None  # "events.amazonaws.com" when a service principal calls (delivery)
    source_arn: str | None = None  # aws:SourceArn of a service delivery (rule, alarm, topic, ...)
    source_account: str | None = None  # aws:SourceAccount of a service delivery


@dataclass(frozen=True)
class ApiCall:
    """One API request as the emulator received it."""

    service: str  # botocore service name: "s3", "dynamodb", "sagemaker", "sagemaker-runtime", ...
    operation: str  # botocore operation name: "PutObject", "TransactWriteItems", "UpdateEndpoint"
    # The request's input members, named as botocore names them (top level: "Bucket", "Key",
    # "TableName", "TransactItems", "QueueUrl", ...).
    params: Mapping[str, Any]
    region: str
    account: str
    secure_transport: bool = (
        True  # the SDKs use HTTPS on AWS; the loopback emulator stands in for TLS
    )


@dataclass(frozen=True)
class Grant:
    """The policy statement that allowed a request: where it lives and which statement."""

    # e.g. "role/PipelineRetrainRoleABC/policy/PipelineRetrainRoleDefaultPolicy"
    # or "bucket-policy/arn:aws:s3:::b"
    policy: str
    statement: int  # index in the document's Statement list
    sid: str | None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    action: str  # "sagemaker:UpdateEndpoint"
    resource: str  # the ARN checked ("*" for actions without resource types)
    # AWS's wording when denied ("User: arn:aws:sts::... is not authorized to perform: ...")
    message: str
    grants: tuple[Grant, ...] = ()
    modelled: bool = True  # False: an operation without a rule, decided at action level on "*"
    caller: str = ""  # the Caller's ARN, for reports


class PolicyStore(Protocol):
    def identity_policies(self, role_arn: str) -> Sequence[tuple[str, Mapping[str, Any]]]:
        """(policy id, document) of every inline and attached managed policy of a role."""
        ...

    def trust_policy(self, role_arn: str) -> Mapping[str, Any] | None: ...

    def resource_policy(self, resource_arn: str) -> tuple[str, Mapping[str, Any]] | None:
        """(policy id, document) of a bucket, topic, queue, key or function policy."""
        ...

    def encryption_key(self, resource_arn: str) -> str | None:
        """KMS key ARN of a bucket/topic/queue/table, None if none or AWS-owned."""
        ...
