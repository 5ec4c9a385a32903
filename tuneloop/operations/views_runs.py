"""Read models of runs: executions of the retrain (and release) state machines.

``list_runs`` lists executions and takes each failed run's cause from its ModelVersions item
(the execution name is the model version) instead of describing every execution;
``run_detail`` reads one execution's history into a stage timeline with links to its logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.operations.names import PlatformNames
from tuneloop.operations.views_common import scan_all, to_dict


@dataclass(frozen=True)
class RunSummary:
    name: str
    execution_arn: str
    state_machine: str  # "retrain" | "release"
    status: str  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    started_at: str
    stopped_at: str = ""
    duration_seconds: float | None = None
    outcome: str = ""  # the version's status: production, rejected, failed, held ...
    failure_cause: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


@dataclass(frozen=True)
class RunStep:
    state: str
    started_at: str
    ended_at: str = ""
    duration_seconds: float | None = None
    status: str = "running"  # succeeded | failed | running | caught
    resource: str = ""  # lambda function name, training job name, ...
    log_url: str = ""
    error: str = ""


@dataclass(frozen=True)
class RunDetail:
    run: RunSummary
    steps: tuple[RunStep, ...]
    input: str = ""
    output: str = ""
    error: str = ""
    cause: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))


class RunNotFoundError(LookupError):
    """No execution of that name or ARN."""


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value or "")


def _seconds(start: Any, stop: Any) -> float | None:
    if isinstance(start, datetime) and isinstance(stop, datetime):
        return round((stop - start).total_seconds(), 3)
    return None


def _machines(names: PlatformNames) -> list[tuple[str, str]]:
    machines = [("retrain", names.state_machine_arn)]
    if names.release_state_machine_arn:
        machines.append(("release", names.release_state_machine_arn))
    return [(label, arn) for label, arn in machines if arn]


def _executions(arn: str, limit: int) -> Iterable[dict[str, Any]]:
    sfn = aws.stepfunctions()
    kwargs: dict[str, Any] = {"stateMachineArn": arn, "maxResults": min(limit, 1000)}
    seen = 0
    while True:
        page = sfn.list_executions(**kwargs)
        for execution in page.get("executions", []):
            yield dict(execution)
            seen += 1
            if seen >= limit:
                return
        if not page.get("nextToken"):
            return
        kwargs["nextToken"] = page["nextToken"]


def _outcomes(names: PlatformNames) -> dict[str, dict[str, Any]]:
    items = scan_all(
        names.model_versions_table,
        ProjectionExpression="model_version, #status, #error, cause",
        ExpressionAttributeNames={"#status": "status", "#error": "error"},
    )
    return {str(i["model_version"]): i for i in items}


def _summary(label: str, execution: Mapping[str, Any], outcome: Mapping[str, Any]) -> RunSummary:
    status = str(execution.get("status", ""))
    cause = ""
    if status != "SUCCEEDED" and outcome.get("error"):
        cause = f"{outcome.get('error')}: {outcome.get('cause', '')}".strip(": ")
    return RunSummary(
        name=str(execution.get("name", "")),
        execution_arn=str(execution.get("executionArn", "")),
        state_machine=label,
        status=status,
        started_at=_iso(execution.get("startDate")),
        stopped_at=_iso(execution.get("stopDate")),
        duration_seconds=_seconds(execution.get("startDate"), execution.get("stopDate")),
        outcome=str(outcome.get("status", "")),
        failure_cause=cause,
    )


def list_runs(names: PlatformNames, *, limit: int = 50) -> list[RunSummary]:
    """The newest ``limit`` executions of the retrain (and release) state machines."""
    names.require("state_machine_arn")
    outcomes = _outcomes(names)
    runs = [
        _summary(label, execution, outcomes.get(str(execution.get("name")), {}))
        for label, arn in _machines(names)
        for execution in _executions(arn, limit)
    ]
    runs.sort(key=lambda r: r.started_at, reverse=True)
    return runs[:limit]


def _resolve(names: PlatformNames, execution: str) -> tuple[str, dict[str, Any]]:
    sfn = aws.stepfunctions()
    candidates = []
    if execution.startswith("arn:"):
        label = "release" if _machine_of(names, execution) else "retrain"
        candidates.append((label, execution))
    else:
        for label, machine in _machines(names):
            # arn:aws:states:<region>:<account>:stateMachine:<name> -> ...:execution:<name>:<run>
            prefix = machine.replace(":stateMachine:", ":execution:", 1)
            candidates.append((label, f"{prefix}:{execution}"))
    for label, arn in candidates:
        try:
            return label, dict(sfn.describe_execution(executionArn=arn))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "ExecutionDoesNotExist",
                "InvalidArn",
            ):
                raise
    raise RunNotFoundError(
        f"no execution {execution!r} of the retrain"
        + (" or release" if names.release_state_machine_arn else "")
        + " state machine; `tuneloop runs list` shows them"
    )


def _machine_of(names: PlatformNames, execution_arn: str) -> bool:
    """True when ``execution_arn`` belongs to the release state machine."""
    release = names.release_state_machine_arn
    if not release:
        return False
    return execution_arn.startswith(release.replace(":stateMachine:", ":execution:", 1) + ":")


def run_detail(names: PlatformNames, execution: str) -> RunDetail:
    """One execution (name or ARN): its stage timeline, failure cause and log links."""
    names.require("state_machine_arn")
    label, described = _resolve(names, execution)
    arn = str(described["executionArn"])
    events = _history(arn)
    region = arn.split(":")[3] if arn.count(":") >= 3 else ""
    outcome = _outcomes_one(names, str(described.get("name", "")))
    error = str(described.get("error", ""))
    cause = str(described.get("cause", ""))
    summary = _summary(label, described, outcome)
    if not summary.failure_cause and (error or cause):
        summary = RunSummary(**{**summary.__dict__, "failure_cause": f"{error}: {cause}"})
    return RunDetail(
        run=summary,
        steps=timeline(events, region=region),
        input=str(described.get("input", "")),
        output=str(described.get("output", "")),
        error=error,
        cause=cause,
    )


def _outcomes_one(names: PlatformNames, version: str) -> dict[str, Any]:
    item = aws.table(names.model_versions_table).get_item(Key={"model_version": version})
    return dict(item.get("Item") or {})


def _history(arn: str) -> list[dict[str, Any]]:
    sfn = aws.stepfunctions()
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(dict(e) for e in page.get("events", []))
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def log_url(region: str, group: str, stream_prefix: str = "") -> str:
    """The CloudWatch console page of a log group (and stream prefix)."""
    if not region:
        return ""
    # The console's fragment encodes '/' as $252F ('%2F', then '%' as '$25').
    encoded = quote(group, safe="").replace("%", "$25")
    url = (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{encoded}"
    )
    if stream_prefix:
        url += "/log-events$3FlogStreamNameFilter$3D" + quote(stream_prefix, safe="")
    return url


def _resource(event: Mapping[str, Any], region: str) -> tuple[str, str]:
    details = event.get("taskScheduledEventDetails") or {}
    kind = str(details.get("resourceType", ""))
    try:
        import json

        parameters = json.loads(details.get("parameters") or "{}")
    except ValueError:
        parameters = {}
    if kind == "lambda":
        function = str(parameters.get("FunctionName", "")).split(":function:")[-1].split(":")[0]
        return function, log_url(region, f"/aws/lambda/{function}") if function else ""
    if kind == "sagemaker":
        job = str(parameters.get("TrainingJobName") or parameters.get("ProcessingJobName") or "")
        group = (
            "/aws/sagemaker/TrainingJobs"
            if "TrainingJobName" in parameters
            else "/aws/sagemaker/ProcessingJobs"
        )
        return job, log_url(region, group, job) if job else ""
    return str(details.get("resource", "")), ""


def timeline(events: Iterable[Mapping[str, Any]], *, region: str = "") -> tuple[RunStep, ...]:
    """Steps from an execution history: one per state entered, in order."""
    steps: list[dict[str, Any]] = []
    open_steps: dict[str, dict[str, Any]] = {}
    for event in events:
        kind = str(event.get("type", ""))
        stamp = event.get("timestamp")
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        if entered:
            name = str(entered.get("name", ""))
            step: dict[str, Any] = {"state": name, "start": stamp, "status": "running"}
            step.update(resource="", log_url="", error="", end=None)
            steps.append(step)
            open_steps[name] = step
        elif exited:
            closed = open_steps.pop(str(exited.get("name", "")), None)
            if closed is not None:
                closed["end"] = stamp
                if closed["status"] == "running":
                    closed["status"] = "succeeded"
        elif kind == "TaskSucceeded" and steps and steps[-1]["status"] == "failed":
            steps[-1]["status"] = "running"  # a retry succeeded; exiting marks it succeeded
        elif kind == "TaskScheduled" and steps:
            steps[-1]["resource"], steps[-1]["log_url"] = _resource(event, region)
        elif kind.endswith("Failed") or kind.endswith("TimedOut"):
            details = next(
                (v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)),
                {},
            )
            message = f"{details.get('error', kind)}: {details.get('cause', '')}".strip(": ")
            target = steps[-1] if steps and kind != "ExecutionFailed" else None
            if target is not None and target["status"] == "running":
                target["status"] = "failed"
                target["error"] = message[:2000]
    return tuple(
        RunStep(
            state=s["state"],
            started_at=_iso(s["start"]),
            ended_at=_iso(s["end"]),
            duration_seconds=_seconds(s["start"], s["end"]),
            status=s["status"],
            resource=s["resource"],
            log_url=s["log_url"],
            error=s["error"],
        )
        for s in steps
    )
