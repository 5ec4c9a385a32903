"""The console's FastAPI app: `create_app(names, auth, secret_key=...)`.

Pages are rendered on the server (Jinja2) from `tuneloop.operations.views`; actions call
`tuneloop.operations.actions` as the signed-in user. htmx only swaps fragments; every page
and action works as a plain form post too.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from tuneloop.console import pages, pages_actions, pages_incidents
from tuneloop.console.auth import Authenticator, AuthError
from tuneloop.console.rendering import render
from tuneloop.console.security import (
    ForbiddenError,
    SignInRequiredError,
    csrf_token,
    current_user,
    sign_in,
)
from tuneloop.operations.names import PlatformNames

HERE = Path(__file__).parent
SESSION_HOURS = 8


def create_app(
    names: PlatformNames,
    auth: Authenticator,
    *,
    secret_key: str,
    secure_cookies: bool = True,
) -> FastAPI:
    app = FastAPI(title="TuneLoop console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.names = names
    app.state.auth = auth
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key,
        session_cookie="tuneloop_session",
        max_age=SESSION_HOURS * 3600,
        same_site="lax",
        https_only=secure_cookies,  # the Secure flag; Starlette always sets HttpOnly
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_error_handlers(app)
    _add_sign_in_routes(app)
    app.include_router(pages.router)
    app.include_router(pages_actions.router)
    app.include_router(pages_incidents.router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SignInRequiredError)
    async def to_login(request: Request, exc: SignInRequiredError) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(ForbiddenError)
    async def refused(request: Request, exc: ForbiddenError) -> Response:
        return render(
            request,
            current_user(request),
            "error.html",
            status_code=403,
            title="Not allowed",
            message=exc.message,
        )


def _add_sign_in_routes(app: FastAPI) -> None:
    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/login", response_model=None)
    async def login_page(request: Request) -> Response:
        auth: Authenticator = request.app.state.auth
        if auth.mode == "redirect":
            state = secrets.token_urlsafe(24)
            request.session["oauth_state"] = state
            return RedirectResponse(auth.login_url(state, _callback_uri(request)), status_code=303)
        return render(request, None, "login.html", error="")

    @app.post("/login", response_model=None)
    async def login_submit(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        csrf_token_field: str = Form("", alias="csrf_token"),
    ) -> Response:
        auth: Authenticator = request.app.state.auth
        expected = request.session.get("csrf")
        if (
            auth.mode != "form"
            or not expected
            or not secrets.compare_digest(str(expected), csrf_token_field)
        ):
            raise ForbiddenError("the sign-in form expired; reload /login and try again")
        user = auth.check_password(username, password)
        if user is None:
            return render(
                request, None, "login.html", status_code=401, error="Wrong username or password."
            )
        sign_in(request, user)
        return RedirectResponse("/", status_code=303)

    @app.get("/auth/callback", response_model=None)
    async def callback(request: Request, code: str = "", state: str = "") -> Response:
        auth: Authenticator = request.app.state.auth
        expected = request.session.pop("oauth_state", None)
        if auth.mode != "redirect" or not expected or not secrets.compare_digest(expected, state):
            raise ForbiddenError("the sign-in attempt expired or was not started here; retry")
        try:
            user = auth.exchange_code(code, _callback_uri(request))
        except AuthError as exc:
            return render(
                request,
                None,
                "error.html",
                status_code=403,
                title="Sign-in failed",
                message=str(exc),
            )
        sign_in(request, user)
        return RedirectResponse("/", status_code=303)

    @app.post("/logout", response_model=None)
    async def logout(
        request: Request, csrf_token_field: str = Form("", alias="csrf_token")
    ) -> Response:
        if not secrets.compare_digest(csrf_token(request), csrf_token_field):
            raise ForbiddenError("the sign-out form expired; reload the page and retry")
        request.session.clear()
        auth: Authenticator = request.app.state.auth
        after = str(request.url_for("login_page"))
        return RedirectResponse(auth.logout_url(after) or "/login", status_code=303)


def _callback_uri(request: Request) -> str:
    return str(request.url_for("callback"))
