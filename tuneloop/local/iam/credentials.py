"""Who holds which credentials on the local platform, as AWS would hand them out.

Every process and every delivery the emulator makes signs its requests with credentials of
its own, so that the enforcer can tell who calls from the SigV4 access key id alone:

- the operator (the platform's own process, the deployer, the ``tuneloop`` CLI) is the
  account's admin, ``arn:aws:iam::ACCOUNT:root``;
- a Lambda invocation, a state machine task, a training job or an endpoint runs as a session
  of its role, assumed through the emulator's STS after the role's trust policy was checked
  for the service that assumes it (``lambda``, ``states``, ``sagemaker``);
- a delivery made on a service's behalf (an alarm's action) signs with service credentials
  that resolve to the service principal and the delivery's ``aws:SourceArn``;
- what AWS does inside its own services (CloudWatch reading metrics to evaluate an alarm,
  SageMaker emitting its endpoint metrics) uses internal credentials, which no policy
  governs: AWS never authorizes those against the account's policies.
"""

from __future__ import annotations

import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from tuneloop.local.iam.model import Caller, Decision

# (role ARN, service principal, aws:SourceAccount, aws:SourceArn) → the trust decision
TrustCheck = Callable[[str, str, str, str | None], Decision]

_KEY_ALPHABET = string.ascii_uppercase + string.digits


def _key(prefix: str) -> str:
    # moto recognizes a 20-character upper-case access key id in the Authorization header.
    return prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(20 - len(prefix)))


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str

    def environment(self) -> dict[str, str]:
        """The variables an SDK in a child process reads them from."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }

    def client(self, service: str, **options: Any) -> Any:
        """A boto3 client signing with these credentials."""
        make: Any = boto3.client
        return make(
            service,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            **options,
        )


def _new_credentials(prefix: str) -> Credentials:
    return Credentials(_key(prefix), secrets.token_hex(20), secrets.token_hex(32))


_OPERATOR = _new_credentials("AKIA")
_INTERNAL = _new_credentials("AKIA")


class AssumeRoleDeniedError(RuntimeError):
    """A service could not assume a role: its trust policy does not allow the service."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.message)
        self.decision = decision


INTERNAL = Caller(arn="internal", account="")
"""What ``resolve`` answers for the internal credentials: not authorized, not recorded."""


class CredentialRegistry:
    """Mints credentials and resolves an access key id back to its ``Caller``."""

    def __init__(self, account: str, region: str) -> None:
        self.account = account
        self.region = region
        self._lock = threading.Lock()
        self._callers: dict[str, Caller] = {}
        self._sessions: dict[tuple[str, str], Credentials] = {}
        self._services: dict[tuple[str, str | None], Credentials] = {}
        # The same operator and internal keys for every registry of the process: boto3's
        # default session (and clients made from it) keep the first credentials they read.
        root = Caller(arn=f"arn:aws:iam::{account}:root", account=account)
        self.operator = self._register(_OPERATOR, root)
        self.internal = self._register(_INTERNAL, INTERNAL)

    def _register(self, credentials: Credentials, caller: Caller) -> Credentials:
        with self._lock:
            self._callers[credentials.access_key_id] = caller
        return credentials

    def _mint(self, prefix: str, caller: Caller) -> Credentials:
        return self._register(_new_credentials(prefix), caller)

    def resolve(self, access_key_id: str) -> Caller | None:
        """The caller an access key id belongs to; None for a key this platform never issued."""
        with self._lock:
            return self._callers.get(access_key_id)

    def for_service(self, service: str, source_arn: str | None) -> Credentials:
        """Credentials of a service principal delivering on behalf of ``source_arn``."""
        key = (service, source_arn)
        with self._lock:
            known = self._services.get(key)
        if known is not None:
            return known
        caller = Caller(
            arn=service,
            account=self.account,
            service=service,
            source_arn=source_arn,
            source_account=self.account,
        )
        credentials = self._mint("AKIA", caller)
        with self._lock:
            return self._services.setdefault(key, credentials)

    def assume_role(
        self,
        role_arn: str,
        service: str,
        trust: TrustCheck,
        *,
        source_arn: str | None = None,
        enforce: bool = True,
    ) -> Credentials:
        """A session of ``role_arn`` as ``service`` assumes it (trust policy checked).

        Sessions are reused per (role, service): a role's session name is its service's
        short name, as in the ARNs AWS shows (``assumed-role/ROLE/lambda``).
        """
        decision = trust(role_arn, service, self.account, source_arn)
        if enforce and not decision.allowed:
            raise AssumeRoleDeniedError(decision)
        session_name = service.split(".", 1)[0]
        key = (role_arn, session_name)
        with self._lock:
            known = self._sessions.get(key)
        if known is not None:
            return known
        from moto.sts.models import sts_backends

        assumed = sts_backends[self.account]["aws"].assume_role(
            region_name=self.region,
            role_session_name=session_name,
            role_arn=role_arn,
            policy="",
            duration=43200,
            external_id="",
        )
        credentials = Credentials(
            assumed.access_key_id, assumed.secret_access_key, assumed.session_token
        )
        caller = Caller(arn=assumed.arn, account=self.account, role_arn=role_arn)
        with self._lock:
            self._callers[credentials.access_key_id] = caller
            return self._sessions.setdefault(key, credentials)
