"""An in-memory PolicyStore and the callers the IAM tests use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneloop.local.iam.model import ApiCall, Caller

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/DeployRole"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/DeployRole/deploy-session"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111-2222"

ROLE_CALLER = Caller(arn=SESSION, account=ACCOUNT, role_arn=ROLE)
ROOT_CALLER = Caller(arn=ROOT, account=ACCOUNT)


def service_caller(service: str, source_arn: str | None = None) -> Caller:
    return Caller(
        arn=service,
        account=ACCOUNT,
        service=service,
        source_arn=source_arn,
        source_account=ACCOUNT,
    )


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


ROOT_KEY_POLICY = document(
    {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"}
)
SSL_ONLY = {
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": "*",
    "Resource": "*",
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}


@dataclass
class FakeStore:
    """Policies by ARN, as a test sets them."""

    identity: dict[str, list[tuple[str, Mapping[str, Any]]]] = field(default_factory=dict)
    trust: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    resources: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def grant(self, *statements: dict[str, Any], role: str = ROLE) -> FakeStore:
        self.identity.setdefault(role, []).append(
            (
                f"role/{role.split('/')[-1]}/policy/P{len(self.identity.get(role, []))}",
                document(*statements),
            )
        )
        return self

    def identity_policies(self, role_arn: str) -> Sequence[tuple[str, Mapping[str, Any]]]:
        return self.identity.get(role_arn, [])

    def trust_policy(self, role_arn: str) -> Mapping[str, Any] | None:
        return self.trust.get(role_arn)

    def resource_policy(self, resource_arn: str) -> tuple[str, Mapping[str, Any]] | None:
        found = self.resources.get(resource_arn)
        return (f"policy/{resource_arn}", found) if found is not None else None

    def encryption_key(self, resource_arn: str) -> str | None:
        return self.keys.get(resource_arn)


def call(service: str, operation: str, secure: bool = True, **params: Any) -> ApiCall:
    return ApiCall(service, operation, params, REGION, ACCOUNT, secure_transport=secure)
