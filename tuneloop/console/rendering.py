"""Templates, the flash message carried across a redirect, and small formatting filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from tuneloop.console import plots
from tuneloop.console.auth import SignedInUser
from tuneloop.console.security import template_context

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
FLASH = "flash"


def _number(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(low: Any, high: Any) -> str:
    if low is None or high is None:
        return ""
    return f"[{low:.3f}, {high:.3f}]"


TEMPLATES.env.filters["num"] = _number
TEMPLATES.env.globals["ci"] = _ci
TEMPLATES.env.globals["plots"] = plots


def flash(request: Request, message: str, *, error: bool = False) -> None:
    request.session[FLASH] = {"message": message, "error": error}


def render(
    request: Request,
    user: SignedInUser | None,
    template: str,
    *,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    message = request.session.pop(FLASH, None)
    context = template_context(request, user, flash=message, **values)
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
