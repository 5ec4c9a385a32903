"""Console users kept in memory with their passwords: the local platform's sign-in."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from tuneloop.console.auth import ROLES, AuthError, SignedInUser


@dataclass(frozen=True)
class _User:
    role: str
    salt: bytes
    digest: bytes


def _digest(salt: bytes, password: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, 10_000)


class LocalUsers:
    """Authenticator in form mode; passwords are compared as salted digests in constant time."""

    mode = "form"

    def __init__(self, users: Mapping[str, _User]) -> None:
        self._users = dict(users)

    @classmethod
    def from_passwords(cls, users: Mapping[str, tuple[str, str]]) -> LocalUsers:
        """`{username: (role, password)}`."""
        built: dict[str, _User] = {}
        for name, (role, password) in users.items():
            if role not in ROLES:
                raise AuthError(f"user {name!r}: unknown role {role!r}")
            salt = secrets.token_bytes(16)
            built[name] = _User(role=role, salt=salt, digest=_digest(salt, password))
        return cls(built)

    def check_password(self, username: str, password: str) -> SignedInUser | None:
        user = self._users.get(username)
        # Unknown users still cost one digest so timing does not tell which names exist.
        salt = user.salt if user else b"\0" * 16
        matches = hmac.compare_digest(_digest(salt, password), user.digest if user else b"")
        return SignedInUser(name=username, role=user.role) if user and matches else None

    def login_url(self, state: str, redirect_uri: str) -> str:
        raise AuthError("local users sign in with the password form")

    def exchange_code(self, code: str, redirect_uri: str) -> SignedInUser:
        raise AuthError("local users sign in with the password form")

    def logout_url(self, redirect_uri: str) -> str | None:
        return None
