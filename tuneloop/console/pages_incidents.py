"""Incidents: the list, one incident with what it found, and acknowledging and resolving it.

Viewers read; operators acknowledge (an optional note) and resolve (a root cause is required).
Both changes go through ``tuneloop.incidents.actions``, as the CLI's do, so each one appends to
the incident's timeline and to the audit trail with the signed-in user as the actor. Neither
asks for confirmation, unlike the deployment controls: the note or root cause the operator
types is the deliberate act, and neither changes the platform, only the incident.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tuneloop.console import plots
from tuneloop.console.auth import SignedInUser
from tuneloop.console.pages import (
    READ_ERRORS,
    SHOWN,
    NewestPage,
    Sections,
    names_of,
    not_found,
)
from tuneloop.console.rendering import flash, render
from tuneloop.console.security import actor_of, require_role
from tuneloop.incidents import actions, store
from tuneloop.incidents.record import OPEN, RESOLVED, STATUSES, Incident

router = APIRouter()
Viewer = Annotated[SignedInUser, Depends(require_role("viewer"))]
Operator = Annotated[SignedInUser, Depends(require_role("operator"))]
ROOT_CAUSE_NEEDED = (
    "Not resolved: say what caused the incident. The root cause is kept on the incident and "
    "in the audit trail."
)


def incidents_table(request: Request) -> str:
    return names_of(request).require("incidents_table")


@router.get("/incidents", response_class=HTMLResponse)
def incidents(request: Request, user: Viewer, status: str = "", limit: int = SHOWN) -> HTMLResponse:
    if status and status not in STATUSES:
        return render(
            request,
            user,
            "error.html",
            status_code=400,
            title="Unknown status",
            message=f"status is one of {', '.join(STATUSES)} (or leave it out for all); "
            f"got {status!r}",
        )
    sections, page = Sections(), NewestPage.of(limit)
    listed = sections.read(
        "incidents",
        lambda: store.list_incidents(
            incidents_table(request), limit=page.read, statuses=(status,) if status else ()
        ),
        [],
    )
    return render(
        request,
        user,
        "incidents.html",
        **page.fields("incidents", listed),
        status=status,
        statuses=STATUSES,
        problems=sections.problems,
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident(request: Request, user: Viewer, incident_id: str) -> HTMLResponse:
    found = _read(request, user, incident_id)
    return found if isinstance(found, HTMLResponse) else _incident_page(request, user, found)


def _read(request: Request, user: SignedInUser, incident_id: str) -> Incident | HTMLResponse:
    """The incident, or the page that says why there is none to show."""
    try:
        return store.get_incident(incidents_table(request), incident_id)
    except store.IncidentError as exc:
        return not_found(request, user, str(exc))
    except READ_ERRORS as exc:
        return render(
            request,
            user,
            "error.html",
            status_code=503,
            title="Incident not readable",
            message=f"incident {incident_id}: could not be read ({exc})",
        )


def _incident_page(
    request: Request,
    user: SignedInUser,
    found: Incident,
    *,
    resolve_error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        user,
        "incident.html",
        status_code=status_code,
        i=found,
        metric_plot=metric_plot(found),
        score_plot=score_plot(found),
        resolve_error=resolve_error,
        can_acknowledge=found.status == OPEN,
        can_resolve=found.status != RESOLVED,
    )


def metric_plot(incident: Incident) -> Any:
    """The alarm's statistic around the state change, with its threshold as a second line."""
    metric = incident.metric
    values = [float(v["value"]) for v in incident.metric_values if v.get("value") is not None]
    statistic = str(metric.get("statistic") or "value")
    series: list[tuple[str, list[float]]] = [(statistic, values)]  # short: legends are 150px
    threshold = metric.get("threshold")
    if values and isinstance(threshold, int | float) and not isinstance(threshold, bool):
        series.append((f"threshold {threshold:g}", [float(threshold)] * len(values)))
    title = f"{metric.get('name') or 'the metric'} ({statistic}) around the state change"
    return plots.line_chart(title, series)


def score_plot(incident: Incident) -> Any:
    scores = (incident.changes or {}).get("scores") or ()
    return plots.difference_chart(
        "Score differences against last-known-good",
        [
            plots.Interval(
                f"{s.get('suite', '')} {s.get('metric', '')}".strip(),
                s.get("diff"),
                s.get("ci_low"),
                s.get("ci_high"),
            )
            for s in scores
        ],
    )


def _back(request: Request, incident_id: str, message: str, *, error: bool = False) -> Response:
    flash(request, message, error=error)
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/acknowledge", response_model=None)
def acknowledge(
    request: Request, user: Operator, incident_id: str, note: str = Form("")
) -> Response:
    found = _read(request, user, incident_id)
    if isinstance(found, HTMLResponse):
        return found
    try:
        actions.acknowledge_incident(names_of(request), actor_of(user), incident_id, note.strip())
    except (store.IncidentError, *READ_ERRORS) as exc:
        return _back(request, incident_id, f"Not acknowledged: {exc}", error=True)
    return _back(request, incident_id, f"Incident {incident_id} acknowledged.")


@router.post("/incidents/{incident_id}/resolve", response_model=None)
def resolve(
    request: Request, user: Operator, incident_id: str, root_cause: str = Form("")
) -> Response:
    found = _read(request, user, incident_id)
    if isinstance(found, HTMLResponse):
        return found
    if not root_cause.strip():
        return _incident_page(
            request, user, found, resolve_error=ROOT_CAUSE_NEEDED, status_code=422
        )
    try:
        actions.resolve_incident(names_of(request), actor_of(user), incident_id, root_cause)
    except (store.IncidentError, *READ_ERRORS) as exc:
        return _back(request, incident_id, f"Not resolved: {exc}", error=True)
    return _back(request, incident_id, f"Incident {incident_id} resolved.")
