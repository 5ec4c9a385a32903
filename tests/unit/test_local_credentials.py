"""Credentials per caller on the local platform: each access key resolves to who holds it."""

from __future__ import annotations

import pytest

from tuneloop.local.iam.credentials import (
    INTERNAL,
    AssumeRoleDeniedError,
    CredentialRegistry,
    TrustCheck,
)
from tuneloop.local.iam.model import Decision

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/Worker"


def _trust(allowed: bool) -> TrustCheck:
    def check(role: str, service: str, account: str, source_arn: str | None) -> Decision:
        message = "" if allowed else f"User: {service} is not authorized to perform: sts:AssumeRole"
        return Decision(allowed, "sts:AssumeRole", role, message)

    return check


def test_the_operator_is_root_and_internal_credentials_are_no_caller() -> None:
    # Given a registry, When its operator and internal keys are resolved
    registry = CredentialRegistry(ACCOUNT, "us-east-1")
    operator = registry.resolve(registry.operator.access_key_id)
    # Then the operator is the account's root, the internal key the internal marker
    assert operator is not None and operator.arn == f"arn:aws:iam::{ACCOUNT}:root"
    assert registry.resolve(registry.internal.access_key_id) is INTERNAL
    assert registry.resolve("AKIANEVERISSUED00000") is None


def test_service_credentials_carry_the_source_of_the_delivery() -> None:
    # Given service credentials minted for an alarm's deliveries
    registry = CredentialRegistry(ACCOUNT, "us-east-1")
    alarm = f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:errors"
    credentials = registry.for_service("cloudwatch.amazonaws.com", alarm)
    # When resolved, Then they are the service principal with the alarm as aws:SourceArn
    caller = registry.resolve(credentials.access_key_id)
    assert caller is not None
    assert (caller.service, caller.source_arn, caller.source_account) == (
        "cloudwatch.amazonaws.com",
        alarm,
        ACCOUNT,
    )
    assert registry.for_service("cloudwatch.amazonaws.com", alarm) == credentials


def test_a_role_session_resolves_to_the_assumed_role() -> None:
    # Given a role the service may assume
    registry = CredentialRegistry(ACCOUNT, "us-east-1")
    # When Lambda assumes it
    credentials = registry.assume_role(ROLE, "lambda.amazonaws.com", _trust(True))
    # Then the session is the role's, named after the service, and reused
    caller = registry.resolve(credentials.access_key_id)
    assert caller is not None
    assert caller.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/Worker/lambda"
    assert caller.role_arn == ROLE
    assert credentials.access_key_id.startswith("ASIA")
    again = registry.assume_role(ROLE, "lambda.amazonaws.com", _trust(True))
    assert again == credentials


def test_a_trust_policy_refusing_the_service_refuses_the_session() -> None:
    # Given a role whose trust policy refuses the service
    registry = CredentialRegistry(ACCOUNT, "us-east-1")
    # When the service assumes it, Then the refusal carries the trust decision's message
    with pytest.raises(AssumeRoleDeniedError, match="not authorized to perform: sts:AssumeRole"):
        registry.assume_role(ROLE, "states.amazonaws.com", _trust(False))
    # And with enforcement off the session is issued anyway
    registry.assume_role(ROLE, "states.amazonaws.com", _trust(False), enforce=False)
