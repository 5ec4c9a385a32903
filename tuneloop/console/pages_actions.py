"""Pages with controls: deployments (deploy, roll back, freeze), benchmarks, runs.

Each action is a POST checked on the server for role and CSRF token; a POST without
`confirm=yes` renders the confirmation step instead of acting.
"""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tuneloop.console import plots
from tuneloop.console.auth import SignedInUser
from tuneloop.console.pages import Sections, names_of
from tuneloop.console.rendering import flash, render
from tuneloop.console.security import actor_of, require_role
from tuneloop.operations import actions, views

router = APIRouter()
Viewer = Annotated[SignedInUser, Depends(require_role("viewer"))]
Operator = Annotated[SignedInUser, Depends(require_role("operator"))]
Admin = Annotated[SignedInUser, Depends(require_role("admin"))]
DEPLOYABLE = ("registered", "deployed", "rolled_back")


def _confirm(
    request: Request,
    user: SignedInUser,
    *,
    what: str,
    consequence: str,
    action: str,
    back: str,
    fields: dict[str, str] | None = None,
) -> HTMLResponse:
    return render(
        request,
        user,
        "confirm.html",
        what=what,
        consequence=consequence,
        action=action,
        back=back,
        fields=fields or {},
    )


def _back(request: Request, path: str, message: str, *, error: bool = False) -> Response:
    flash(request, message, error=error)
    return RedirectResponse(path, status_code=303)


# -- deployments ---------------------------------------------------------------------------
@router.get("/deployments", response_class=HTMLResponse)
def deployments(request: Request, user: Viewer) -> HTMLResponse:
    names, sections = names_of(request), Sections()
    prod = sections.read("production", lambda: views.production(names), None)
    lines = sections.read("model lines", lambda: views.line_productions(names), [])
    items = sections.read("versions", lambda: views.summary_items(names), [])
    models = sections.read("models", lambda: views.list_models(names, items=items), [])
    history = sections.read(
        "history", lambda: views.deployment_history(names, items=items, only_these=False), []
    )
    return render(
        request,
        user,
        "deployments.html",
        prod=prod,
        lines=lines,
        line_names=names.lines().names,
        deployable=[m for m in models if m.status in DEPLOYABLE],
        history=history,
        problems=sections.problems,
    )


def _on_line(model_line: str) -> str:
    return f" on model line {model_line}" if model_line else ""


@router.post("/deployments/deploy", response_model=None)
def deploy(
    request: Request,
    user: Operator,
    version: str = Form(""),
    model_line: str = Form(""),
    confirm: str = Form(""),
) -> Response:
    on = _on_line(model_line)
    if confirm != "yes":
        serves = f"Model line {model_line}" if model_line else "The endpoint"
        return _confirm(
            request,
            user,
            what=f"deploy {version}{on}",
            consequence=f"{serves} will serve {version} once the release run finishes.",
            action="/deployments/deploy",
            back="/deployments",
            fields={"version": version, "model_line": model_line},
        )
    try:
        started = actions.deploy_version(
            names_of(request), actor_of(user), version, model_line=model_line or None
        )
    except actions.ActionError as exc:
        return _back(request, "/deployments", str(exc), error=True)
    run = started.execution_arn.rsplit(":", 1)[-1]
    return _back(request, "/deployments", f"Deploying {version}{on}: release run {run} started.")


@router.post("/deployments/rollback", response_model=None)
def rollback(
    request: Request,
    user: Operator,
    to_version: str = Form(""),
    model_line: str = Form(""),
    confirm: str = Form(""),
) -> Response:
    target = to_version or "the last-known-good version"
    on = _on_line(model_line)
    if confirm != "yes":
        others = " The other model lines keep serving." if model_line else ""
        return _confirm(
            request,
            user,
            what=f"roll back{on} to {target}",
            consequence="Production changes now; the serving version becomes the previous one."
            + others,
            action="/deployments/rollback",
            back="/deployments",
            fields={"to_version": to_version, "model_line": model_line},
        )
    try:
        result = actions.roll_back(
            names_of(request),
            actor_of(user),
            to_version=to_version or None,
            model_line=model_line or None,
        )
    except actions.ActionError as exc:
        return _back(request, "/deployments", str(exc), error=True)
    return _back(
        request,
        "/deployments",
        f"Rolled back{on} from {result.from_version} to {result.to_version}. {result.detail}",
    )


@router.post("/deployments/freeze", response_model=None)
def freeze(
    request: Request, user: Operator, reason: str = Form(""), confirm: str = Form("")
) -> Response:
    if confirm != "yes":
        return _confirm(
            request,
            user,
            what="freeze deployment",
            consequence="Approved candidates are held; nothing deploys automatically.",
            action="/deployments/freeze",
            back="/deployments",
            fields={"reason": reason},
        )
    try:
        actions.freeze(names_of(request), actor_of(user), reason)
    except actions.ActionError as exc:
        return _back(request, "/deployments", str(exc), error=True)
    return _back(request, "/deployments", f"Deployment frozen: {reason}")


@router.post("/deployments/unfreeze", response_model=None)
def unfreeze(request: Request, user: Operator, confirm: str = Form("")) -> Response:
    if confirm != "yes":
        return _confirm(
            request,
            user,
            what="unfreeze deployment",
            consequence="Approved candidates deploy automatically again.",
            action="/deployments/unfreeze",
            back="/deployments",
        )
    try:
        actions.unfreeze(names_of(request), actor_of(user))
    except actions.ActionError as exc:
        return _back(request, "/deployments", str(exc), error=True)
    return _back(request, "/deployments", "Deployment unfrozen.")


# -- gate policy (admin) -------------------------------------------------------------------
@router.post("/deployments/gate-policy", response_model=None)
def gate_policy(
    request: Request, user: Admin, policy: str = Form(""), model_line: str = Form("")
) -> Response:
    page = f"/benchmarks?line={quote(model_line)}" if model_line else "/benchmarks"
    try:
        parsed = json.loads(policy)
        if not isinstance(parsed, dict):
            raise ValueError("the policy is a JSON object")
        actions.set_gate_policy(names_of(request), actor_of(user), parsed, model_line)
    except (ValueError, actions.ActionError) as exc:
        return _back(request, page, f"Gate policy not changed: {exc}", error=True)
    of_line = f" of line {model_line}" if model_line else ""
    return _back(request, page, f"Gate policy{of_line} changed.")


# -- benchmarks ----------------------------------------------------------------------------
def _benchmarks_page(
    request: Request,
    user: SignedInUser,
    suite: str = "",
    *,
    problems: list[actions.BenchmarkProblem] | None = None,
    upload_name: str = "",
    status_code: int = 200,
    line: str = "",
) -> HTMLResponse:
    names, sections = names_of(request), Sections()
    suites = sections.read("suites", lambda: views.benchmark_suites(names), [])
    chosen = suite or (suites[0].name if suites else "")
    items = sections.read("versions", lambda: views.summary_items(names), [])
    history = (
        sections.read("history", lambda: views.benchmark_history(names, chosen, items), [])
        if chosen
        else []
    )
    band = plots.band_chart(
        f"{chosen} score per model version (95% CI)",
        [plots.Interval(p.model_version, p.value, p.ci_low, p.ci_high) for p in history],
    )
    runnable = [str(i["model_version"]) for i in items if i.get("model_data_url")]
    runs = sections.read("benchmark runs", lambda: views.benchmark_runs(names), [])
    # With model lines each line gates by its own policy: the page edits one line's.
    line_names = list(names.lines().names)
    policy_line = line if line in line_names else (line_names[0] if line_names else "")
    policy = (
        sections.read("gate policy", lambda: actions.gate_policy(names, policy_line), {})
        if user.has_role("admin")
        else {}
    )
    return render(
        request,
        user,
        "benchmarks.html",
        status_code=status_code,
        suites=suites,
        chosen=chosen,
        history=history,
        band=band,
        upload_problems=problems,
        upload_name=upload_name,
        runnable=runnable,
        runs=runs,
        policy=json.dumps(policy, indent=1, sort_keys=True),
        policy_line=policy_line,
        line_names=line_names,
        problems=sections.problems,
    )


@router.get("/benchmarks", response_class=HTMLResponse)
def benchmarks(request: Request, user: Viewer, suite: str = "", line: str = "") -> HTMLResponse:
    return _benchmarks_page(request, user, suite, line=line)


@router.post("/benchmarks/upload", response_model=None)
async def upload_benchmark(
    request: Request, user: Admin, name: str = Form(""), file: UploadFile | None = None
) -> Response:
    data = await file.read() if file is not None else b""
    names = names_of(request)
    try:
        from starlette.concurrency import run_in_threadpool

        created = await run_in_threadpool(
            actions.create_benchmark, names, actor_of(user), name, data
        )
    except actions.BenchmarkValidationError as exc:
        return _benchmarks_page(
            request, user, problems=exc.problems, upload_name=name, status_code=422
        )
    except actions.ActionError as exc:
        return _back(request, "/benchmarks", str(exc), error=True)
    verb = "stored" if created.created else "already stored (same content)"
    return _back(
        request,
        f"/benchmarks?suite={created.name}",
        f"Benchmark {created.name} version {created.version} {verb}: {created.item_count} items.",
    )


@router.post("/benchmarks/run", response_model=None)
def run_benchmark(
    request: Request,
    user: Operator,
    suite: str = Form(""),
    model_version: str = Form(""),
    version: str = Form(""),
) -> Response:
    try:
        started = actions.run_benchmark(
            names_of(request), actor_of(user), model_version, suite, version.strip() or "latest"
        )
    except (actions.ActionError, ValueError) as exc:
        return _back(request, f"/benchmarks?suite={suite}", f"No run started: {exc}", error=True)
    return _back(
        request,
        f"/benchmarks?suite={started.suite}",
        f"Benchmark run {started.execution_name} started: {started.suite} "
        f"(version {started.version[:12]}) on {started.model_version}; its score appears in "
        "the history when the job finishes.",
    )


# -- runs ----------------------------------------------------------------------------------
@router.post("/runs/start", response_model=None)
def start_run(request: Request, user: Operator, confirm: str = Form("")) -> Response:
    if confirm != "yes":
        return _confirm(
            request,
            user,
            what="start a retraining run",
            consequence="A run trains, evaluates and gates a new candidate (minutes to hours).",
            action="/runs/start",
            back="/runs",
        )
    try:
        started = actions.start_run(names_of(request), actor_of(user))
    except actions.ActionError as exc:
        return _back(request, "/runs", str(exc), error=True)
    return _back(
        request, f"/runs/{started.execution_name}", f"Run {started.execution_name} started."
    )


@router.post("/runs/{execution}/stop", response_model=None)
def stop_run(request: Request, user: Operator, execution: str, confirm: str = Form("")) -> Response:
    if confirm != "yes":
        return _confirm(
            request,
            user,
            what=f"stop run {execution}",
            consequence="The run is aborted; its candidate is not evaluated or deployed.",
            action=f"/runs/{execution}/stop",
            back=f"/runs/{execution}",
        )
    try:
        actions.stop_run(names_of(request), actor_of(user), execution)
    except actions.ActionError as exc:
        return _back(request, f"/runs/{execution}", str(exc), error=True)
    return _back(request, f"/runs/{execution}", f"Run {execution} stopped.")
