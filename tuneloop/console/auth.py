"""Who is signed in to the console and what their role lets them do.

An `Authenticator` signs users in: local users with a password form (`auth_local.LocalUsers`)
or Cognito's hosted UI with the authorization-code flow (`auth_cognito.CognitoAuth`).
Roles are ordered: each one may do everything the roles before it may.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

ROLES: tuple[str, ...] = ("viewer", "operator", "admin")


class AuthError(RuntimeError):
    """Signing in failed (bad code, bad token, no role); the message is safe to show."""


@dataclass(frozen=True)
class SignedInUser:
    name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise AuthError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")

    def has_role(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)


def role_rank(role: str) -> int:
    """Position of `role` in ROLES; unknown roles rank below every known one."""
    try:
        return ROLES.index(role)
    except ValueError:
        return -1


def highest_role(roles: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The highest of `roles` that is a known role (Cognito groups), or None."""
    known = [role for role in roles if role in ROLES]
    return max(known, key=role_rank) if known else None


class Authenticator(Protocol):
    mode: str  # "form" (username/password) or "redirect" (hosted UI)

    def check_password(self, username: str, password: str) -> SignedInUser | None:
        """Form mode: the user when the password matches, else None."""
        ...

    def login_url(self, state: str, redirect_uri: str) -> str:
        """Redirect mode: where to send the browser to sign in."""
        ...

    def exchange_code(self, code: str, redirect_uri: str) -> SignedInUser:
        """Redirect mode: the user the authorization code belongs to; raises AuthError."""
        ...

    def logout_url(self, redirect_uri: str) -> str | None:
        """Where to send the browser after the session is cleared, or None for /login."""
        ...
