"""Sessions, role checks and CSRF tokens: every route declares the role it needs.

The signed-in user lives in the signed session cookie (Starlette's SessionMiddleware). A
route's dependency `require_role(...)` refuses anyone below that role with 403 and sends
signed-out browsers to /login (303). Every POST carries the session's CSRF token, as the
hidden form field `csrf_token` or the `X-CSRF-Token` header htmx sends.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from tuneloop.console.auth import ROLES, SignedInUser
from tuneloop.operations.audit import Actor

SESSION_USER = "user"
SESSION_CSRF = "csrf"


class SignInRequiredError(Exception):
    """No one is signed in: the handler sends the browser to /login."""


class ForbiddenError(Exception):
    """Signed in, but the role or the CSRF token does not allow this request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def current_user(request: Request) -> SignedInUser | None:
    data = request.session.get(SESSION_USER)
    if not isinstance(data, dict) or data.get("role") not in ROLES:
        return None
    return SignedInUser(name=str(data.get("name", "")), role=str(data["role"]))


def sign_in(request: Request, user: SignedInUser) -> None:
    request.session.clear()  # a fresh session (and CSRF token) for every sign-in
    request.session[SESSION_USER] = {"name": user.name, "role": user.role}
    csrf_token(request)


def csrf_token(request: Request) -> str:
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


async def _check_csrf(request: Request) -> None:
    expected = request.session.get(SESSION_CSRF)
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(str(expected), sent):
        raise ForbiddenError("the form's CSRF token is missing or stale; reload the page and retry")


def require_role(role: str) -> Callable[[Request], Awaitable[SignedInUser]]:
    """Dependency: the signed-in user when their role is at least `role`; POSTs need CSRF."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def dependency(request: Request) -> SignedInUser:
        user = current_user(request)
        if user is None:
            raise SignInRequiredError()
        if not user.has_role(role):
            raise ForbiddenError(f"{user.name} is a {user.role}; this needs the {role} role")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            await _check_csrf(request)
        return user

    return dependency


def actor_of(user: SignedInUser) -> Actor:
    return Actor(name=f"{user.name} ({user.role})", kind="user", source="console")


def template_context(request: Request, user: SignedInUser | None, **values: Any) -> dict[str, Any]:
    return {"request": request, "user": user, "csrf_token": csrf_token(request), **values}
