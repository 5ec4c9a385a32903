"""Read-only pages: what is in production, the data, the models, the runs, the audit trail.

Route functions are plain `def`: the views call boto3, so FastAPI runs them in its thread pool.
A section whose read fails shows the error and the rest of the page still renders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from tuneloop.console import plots
from tuneloop.console.auth import SignedInUser
from tuneloop.console.rendering import render
from tuneloop.console.security import require_role
from tuneloop.incidents import store as incidents
from tuneloop.incidents.record import OPEN
from tuneloop.operations import views
from tuneloop.operations.names import NamesError, PlatformNames
from tuneloop.operations.views_evaluation import by_suite
from tuneloop.operations.views_runs import RunNotFoundError

router = APIRouter()
Viewer = Annotated[SignedInUser, Depends(require_role("viewer"))]
T = TypeVar("T")
READ_ERRORS = (ClientError, BotoCoreError, NamesError)
SHOWN = 50
# The dashboard counts open incidents of the last three months: three Queries, not 24.
DASHBOARD_INCIDENT_MONTHS = 3
"""How many of the newest drops and versions a list page shows (``?limit=`` up to
:data:`MAX_SHOWN`)."""
MAX_SHOWN = 1000


def names_of(request: Request) -> PlatformNames:
    names: PlatformNames = request.app.state.names
    return names


class Sections:
    """Reads one page section at a time; a failure becomes a message, not a 500."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def read(self, label: str, read: Callable[[], T], default: Any) -> T:
        try:
            return read()
        except READ_ERRORS as exc:
            self.problems.append(f"{label}: could not be read ({exc})")
            return default


def not_found(request: Request, user: SignedInUser, message: str) -> HTMLResponse:
    return render(request, user, "error.html", status_code=404, title="Not found", message=message)


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, user: Viewer) -> HTMLResponse:
    names, sections = names_of(request), Sections()
    prod = sections.read("production", lambda: views.production(names), None)
    lines = sections.read("model lines", lambda: views.line_productions(names), [])
    runs = sections.read("runs", lambda: views.list_runs(names, limit=10), [])
    alarms = sections.read("alarms", lambda: views.alarm_states(names), [])
    open_incidents = sections.read(
        "incidents",
        lambda: incidents.list_incidents(
            names.require("incidents_table"),
            limit=SHOWN + 1,
            statuses=(OPEN,),
            months=DASHBOARD_INCIDENT_MONTHS,
        ),
        None,
    )
    records = sections.read("records", lambda: views.records_over_time(names), [])
    version = prod.version if prod else ""
    evaluation = sections.read(
        "continuous evaluation", lambda: views.evaluation_history(names, version), []
    )
    return render(
        request,
        user,
        "dashboard.html",
        prod=prod,
        lines=lines,
        scores=prod.scores if prod else (),
        runs=runs,
        alarms=alarms,
        open_incidents=None if open_incidents is None else len(open_incidents),
        incidents_shown=SHOWN,
        records=records,
        evaluation_by_suite=by_suite(evaluation),
        problems=sections.problems,
    )


@dataclass(frozen=True)
class NewestPage:
    """The newest ``shown`` of a list, read as one more, which tells whether there are more
    without counting them all."""

    shown: int

    @classmethod
    def of(cls, limit: int) -> NewestPage:
        return cls(min(max(limit, 1), MAX_SHOWN))

    @property
    def read(self) -> int:
        return self.shown + 1

    def fields(self, name: str, listed: list[Any]) -> dict[str, Any]:
        """The template's ``<name>``, ``more`` and ``next_limit``."""
        return {
            name: listed[: self.shown],
            "more": len(listed) > self.shown and self.shown < MAX_SHOWN,
            "next_limit": min(self.shown * 4, MAX_SHOWN),
        }


@router.get("/data", response_class=HTMLResponse)
def data(request: Request, user: Viewer, limit: int = SHOWN) -> HTMLResponse:
    sections, page = Sections(), NewestPage.of(limit)
    drops = sections.read("drops", lambda: views.list_drops(names_of(request), limit=page.read), [])
    return render(
        request, user, "data.html", **page.fields("drops", drops), problems=sections.problems
    )


@router.get("/data/{drop_id}", response_class=HTMLResponse)
def drop(request: Request, user: Viewer, drop_id: str) -> HTMLResponse:
    try:
        detail = views.drop_detail(names_of(request), drop_id)
    except LookupError as exc:  # no such drop, or an ambiguous or malformed reference
        return not_found(request, user, str(exc))
    return render(request, user, "drop.html", detail=detail)


@router.get("/models", response_class=HTMLResponse)
def models(request: Request, user: Viewer, limit: int = SHOWN) -> HTMLResponse:
    sections, page = Sections(), NewestPage.of(limit)
    listed = sections.read(
        "models", lambda: views.list_models(names_of(request), limit=page.read), []
    )
    return render(
        request,
        user,
        "models.html",
        **page.fields("models", listed),
        # The Line column, with lines or once a version has one (lines removed since)
        show_lines=bool(names_of(request).lines()) or any(m.model_line for m in listed),
        problems=sections.problems,
    )


@router.get("/models/compare", response_class=HTMLResponse)
def compare(request: Request, user: Viewer, a: str = "", b: str = "") -> HTMLResponse:
    if not a or not b:
        return render(
            request,
            user,
            "error.html",
            status_code=400,
            title="Compare two versions",
            message="Pick two versions on /models (compare?a=VERSION&b=VERSION).",
        )
    try:
        comparison = views.compare_models(names_of(request), a, b)
    except LookupError as exc:
        return not_found(request, user, str(exc))
    differences = [
        plots.Interval(f"{d.suite} {d.metric}", d.diff, d.ci_low, d.ci_high)
        for d in comparison.scores
    ]
    return render(request, user, "compare.html", c=comparison, differences=differences)


@router.get("/models/{version}", response_class=HTMLResponse)
def model(request: Request, user: Viewer, version: str) -> HTMLResponse:
    try:
        detail = views.model_detail(names_of(request), version)
    except LookupError as exc:
        return not_found(request, user, str(exc))
    return render(request, user, "model.html", m=detail)


@router.get("/runs", response_class=HTMLResponse)
def runs(request: Request, user: Viewer) -> HTMLResponse:
    sections = Sections()
    listed = sections.read("runs", lambda: views.list_runs(names_of(request), limit=50), [])
    return render(request, user, "runs.html", runs=listed, problems=sections.problems)


@router.get("/runs/{execution}", response_class=HTMLResponse)
def run(request: Request, user: Viewer, execution: str) -> HTMLResponse:
    try:
        detail = views.run_detail(names_of(request), execution)
    except (RunNotFoundError, LookupError) as exc:
        return not_found(request, user, str(exc))
    return render(request, user, "run.html", r=detail)


@router.get("/audit", response_class=HTMLResponse)
def audit(
    request: Request, user: Viewer, who: str = "", action: str = "", target: str = ""
) -> HTMLResponse:
    sections = Sections()
    records: list[dict[str, Any]] = sections.read(
        "audit trail",
        lambda: views.audit_records(
            names_of(request), who=who or None, action=action or None, target=target or None
        ),
        [],
    )
    return render(
        request,
        user,
        "audit.html",
        records=records,
        who=who,
        action=action,
        target=target,
        problems=sections.problems,
    )
