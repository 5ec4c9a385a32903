"""Every change an operator makes to the platform (CLI and console call these).

Each action checks what it may do, does it through the same code the pipeline uses, and
appends one audit record (tuneloop/operations/audit.py) with who, what, target, before and
after. Deploys and rollbacks to a chosen version run the release state machine (the same
Deploy path, blue/green update and rollback alarms as a retrain run); ConfirmDeployment
writes their audit record once the endpoint serves the version (``deploy`` / ``rollback``
with the person as the actor). A rollback to last-known-good invokes the Rollback function
(the alarm path's core), which writes its record.

Errors are :class:`ActionError` with a message that says what to do and an ``exit_code``:
2 usage (unknown version, invalid input), 3 conflict / not allowed now, 1 anything else.
"""

from __future__ import annotations

import importlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.benchmarks.runs import MMLU, RunRequest
from tuneloop.benchmarks.store import LATEST, BenchmarkStore, check_name, check_version_spec
from tuneloop.evaluation.errors import BenchmarkError
from tuneloop.gating.policy import PolicyError, parse_policy
from tuneloop.model_line_settings import ModelLineError
from tuneloop.operations import audit
from tuneloop.operations import freeze as freezing
from tuneloop.operations import gate_policy as policies
from tuneloop.operations.audit import Actor
from tuneloop.operations.freeze import FreezeState
from tuneloop.operations.names import PlatformNames
from tuneloop.release import model_versions as versions
from tuneloop.release.control import production_key, read_production
from tuneloop.release.rollback import ManualRollback
from tuneloop.retrain import start_retrain_if_due

__all__ = [
    "ActionError",
    "BenchmarkCreated",
    "BenchmarkProblem",
    "BenchmarkValidationError",
    "DeployStarted",
    "FreezeState",
    "GatePolicyChange",
    "RollbackResult",
    "RunStarted",
    "chosen_line",
    "create_benchmark",
    "deploy_version",
    "freeze",
    "freeze_state",
    "gate_policy",
    "roll_back",
    "set_gate_policy",
    "start_run",
    "stop_run",
    "unfreeze",
]

USAGE, CONFLICT, OTHER = 2, 3, 1
# A person may (re)deploy these: a registered candidate, or an earlier production version.
APPROVED = (versions.REGISTERED, versions.DEPLOYED, versions.ROLLED_BACK)
PIPELINE_TARGET = "pipeline"
GATE_POLICY_TARGET = "gate policy"


class ActionError(RuntimeError):
    """The action was refused or failed; the message says what to do."""

    def __init__(self, message: str, *, exit_code: int = OTHER) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class BenchmarkProblem:
    line: int | None
    field: str | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BenchmarkValidationError(ActionError):
    """A benchmark upload is invalid: ``problems`` lists every line and field found wrong."""

    def __init__(self, name: str, problems: list[BenchmarkProblem]) -> None:
        first = problems[0]
        where = f"line {first.line}" if first.line is not None else "the file"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        field_text = f", field {first.field!r}" if first.field else ""
        super().__init__(
            f"benchmark {name!r} is invalid: {where}{field_text}: {first.problem}{more}; "
            "fix the file and upload it again",
            exit_code=USAGE,
        )
        self.name = name
        self.problems = problems


@dataclass(frozen=True)
class DeployStarted:
    model_version: str
    execution_arn: str
    request_id: str
    rollback: bool = False
    model_line: str = ""  # "" for the endpoint's own model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RollbackResult:
    from_version: str
    to_version: str
    how: str  # "last_known_good" (Rollback function) | "release" (release state machine)
    request_id: str
    execution_arn: str = ""
    endpoint_config_name: str = ""
    detail: str = ""
    model_line: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunStarted:
    execution_name: str
    execution_arn: str
    reason: str
    model_line: str = ""  # the line the run trains ("" without model lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchmarkCreated:
    name: str
    version: str
    item_count: int
    created: bool  # False: the same content existed already (nothing was written)
    s3_uri: str
    tags: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchmarkRunStarted:
    execution_name: str
    execution_arn: str
    model_version: str
    suite: str
    version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GatePolicyChange:
    before: dict[str, Any]
    after: dict[str, Any]
    request_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- deploy and roll back ------------------------------------------------------------------
def deploy_version(
    names: PlatformNames, actor: Actor, model_version: str, *, model_line: str | None = None
) -> DeployStarted:
    """Deploy an approved version (registered, deployed or rolled back) through the release
    state machine; freeze does not hold it. With model lines, ``model_line`` names the line
    (the version must be one of its versions)."""
    line = chosen_line(names, model_line, verb="deploy")
    item = _approved_version(names, model_version, verb="deploy", model_line=line)
    return _start_release(names, actor, item, rollback=False, model_line=line)


def roll_back(
    names: PlatformNames,
    actor: Actor,
    *,
    to_version: str | None = None,
    model_line: str | None = None,
) -> RollbackResult:
    """``to_version`` None: restore last-known-good now (the Rollback function); else deploy
    that earlier version through the release state machine, flagged as a rollback. With
    model lines, ``model_line`` names the line; the others keep serving."""
    line = chosen_line(names, model_line, verb="roll back")
    production = read_production(names.control_table, production_key(line or None))
    if production is None:
        on = f" on model line {line}" if line else ""
        raise ActionError(
            f"nothing is in production{on}, so there is nothing to roll back; "
            "`tuneloop deploy VERSION` deploys a registered version",
            exit_code=CONFLICT,
        )
    if to_version is not None:
        item = _approved_version(names, to_version, verb="roll back to", model_line=line)
        started = _start_release(names, actor, item, rollback=True, model_line=line)
        return RollbackResult(
            from_version=production.current.model_version,
            to_version=to_version,
            how="release",
            request_id=started.request_id,
            execution_arn=started.execution_arn,
            detail=f"release run {started.execution_arn.rsplit(':', 1)[-1]} started",
            model_line=line,
        )
    if production.last_known_good is None:
        raise ActionError(
            f"{production.current.model_version} is in production and there is no "
            "last-known-good (the first deployment, or a rollback already used it); "
            "roll back to a chosen version with --to VERSION",
            exit_code=CONFLICT,
        )
    request_id = uuid.uuid4().hex
    event = ManualRollback(
        actor=actor, reason="manual rollback", request_id=request_id, model_line=line
    )
    function = names.require("rollback_function")
    response = aws.client("lambda").invoke(
        FunctionName=function,
        InvocationType="RequestResponse",
        Payload=json.dumps(event.to_event()).encode(),
    )
    payload = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        message = payload.get("errorMessage", payload) if isinstance(payload, dict) else payload
        raise ActionError(f"the Rollback function {function} failed: {message}")
    if payload.get("action") != "rolled_back":
        serving = f"inference component {line}" if line else "the endpoint"
        raise ActionError(
            f"no rollback: {payload.get('reason', payload)}; check {serving} "
            "(`tuneloop status`) and try again once it is InService",
            exit_code=CONFLICT,
        )
    return RollbackResult(
        from_version=str(payload.get("from_version", "")),
        to_version=str(payload.get("to_version", "")),
        how="last_known_good",
        request_id=request_id,
        endpoint_config_name=str(payload.get("endpoint_config_name", "")),
        detail=str(payload.get("reason", "")),
        model_line=line,
    )


def chosen_line(names: PlatformNames, model_line: str | None, *, verb: str) -> str:
    """The model line a deploy or rollback acts on: ``""`` (the endpoint's own model) on a
    stage without lines; with lines, one of them must be named."""
    lines = names.lines()
    if not lines:
        if model_line:
            raise ActionError(
                f"stage {names.stage!r} has no model lines, so there is no line "
                f"{model_line!r}; {verb} without --line",
                exit_code=USAGE,
            )
        return ""
    if not model_line:
        raise ActionError(
            f"stage {names.stage!r} serves the model lines {', '.join(lines.names)}: "
            f"say which to {verb} with --line NAME",
            exit_code=USAGE,
        )
    try:
        return lines.get(model_line).name
    except ModelLineError as exc:
        raise ActionError(str(exc), exit_code=USAGE) from None


def _approved_version(
    names: PlatformNames, model_version: str, *, verb: str, model_line: str = ""
) -> dict[str, Any]:
    item = versions.get_version(names.model_versions_table, model_version)
    if item is None:
        raise ActionError(
            f"there is no model version {model_version!r}; `tuneloop models list` shows them",
            exit_code=USAGE,
        )
    version_line = str(item.get("model_line", ""))
    if version_line != model_line:
        # A line's adapter is trained and gated on the line's data: it serves no other.
        trained_for = f"model line {version_line}" if version_line else "no model line"
        raise ActionError(
            f"cannot {verb} {model_version} on "
            f"{'model line ' + model_line if model_line else 'the endpoint'}: it was trained "
            f"for {trained_for}; `tuneloop models list` shows each version's line",
            exit_code=CONFLICT,
        )
    status = str(item.get("status", ""))
    if status == versions.PRODUCTION:
        raise ActionError(f"{model_version} is already in production", exit_code=CONFLICT)
    if status not in APPROVED:
        raise ActionError(
            f"cannot {verb} {model_version}: it is {status}; only a version the gate approved "
            f"and the registry holds ({', '.join(APPROVED)}) can be deployed",
            exit_code=CONFLICT,
        )
    if not item.get("model_package_arn"):
        raise ActionError(
            f"{model_version} has no registered model package; it cannot be deployed",
            exit_code=CONFLICT,
        )
    return item


def _start_release(
    names: PlatformNames,
    actor: Actor,
    item: dict[str, Any],
    *,
    rollback: bool,
    model_line: str = "",
) -> DeployStarted:
    arn = names.require("release_state_machine_arn")
    sfn = aws.stepfunctions()
    running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=1)
    if running["executions"]:
        raise ActionError(
            f"release {running['executions'][0]['name']} is still running; one at a time "
            "(`tuneloop runs list` shows it)",
            exit_code=CONFLICT,
        )
    model_version = str(item["model_version"])
    request_id = uuid.uuid4().hex
    kind = "rollback" if rollback else "deploy"
    name = f"{model_version[:50]}-{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    execution_arn = sfn.start_execution(
        stateMachineArn=arn,
        name=name,
        input=json.dumps(
            {
                "model_version": model_version,
                "model_package_arn": str(item["model_package_arn"]),
                "manual": True,
                "rollback": rollback,
                "actor": actor.to_dict(),
                "request_id": request_id,
                "model_line": model_line,
            }
        ),
    )["executionArn"]
    return DeployStarted(model_version, execution_arn, request_id, rollback, model_line)


# -- freeze --------------------------------------------------------------------------------
def freeze_state(names: PlatformNames) -> FreezeState:
    return freezing.read_freeze(names.control_table)


def freeze(names: PlatformNames, actor: Actor, reason: str) -> FreezeState:
    """Stop automatic deployment: runs still train, evaluate, gate and register."""
    if not reason.strip():
        raise ActionError("say why you freeze deployment (a reason is required)", exit_code=USAGE)
    before = freezing.read_freeze(names.control_table)
    if before.frozen:
        raise ActionError(
            f"deployment is already frozen by {before.by} since {before.at} ({before.reason})",
            exit_code=CONFLICT,
        )
    after = freezing.write_freeze(names.control_table, frozen=True, reason=reason, by=actor.name)
    _audit(names, actor, "freeze", PIPELINE_TARGET, before.to_dict(), after.to_dict())
    return after


def unfreeze(names: PlatformNames, actor: Actor) -> FreezeState:
    before = freezing.read_freeze(names.control_table)
    if not before.frozen:
        raise ActionError("deployment is not frozen", exit_code=CONFLICT)
    after = freezing.write_freeze(names.control_table, frozen=False, reason="", by=actor.name)
    _audit(names, actor, "unfreeze", PIPELINE_TARGET, before.to_dict(), after.to_dict())
    return after


# -- runs ----------------------------------------------------------------------------------
def start_run(names: PlatformNames, actor: Actor, *, model_line: str | None = None) -> RunStarted:
    """Start a retrain run now (one at a time, as the trigger does). With model lines,
    ``model_line`` names the line to retrain; only its pending records are counted off."""
    line = chosen_line(names, model_line, verb="retrain")
    outcome = start_retrain_if_due(
        control_table=names.control_table,
        state_machine_arn=names.require("state_machine_arn"),
        threshold=0,
        trigger="manual",
        force=True,
        model_lines=names.lines().names,
        model_line=line,
    )
    if not outcome.started:
        raise ActionError(f"no run started: {outcome.reason}", exit_code=CONFLICT)
    execution_name = outcome.execution_arn.rsplit(":", 1)[-1]
    _audit(
        names,
        actor,
        "run_started",
        execution_name,
        {"pending_records": outcome.pending_records},
        {
            "execution_arn": outcome.execution_arn,
            "status": "RUNNING",
            **({"model_line": line} if line else {}),
        },
    )
    return RunStarted(execution_name, outcome.execution_arn, outcome.reason, outcome.model_line)


def stop_run(names: PlatformNames, actor: Actor, execution: str) -> None:
    """Stop a running retrain (or release) execution, by name or ARN."""
    machines = [a for a in (names.state_machine_arn, names.release_state_machine_arn) if a]
    if not machines:
        names.require("state_machine_arn")
    sfn = aws.stepfunctions()
    candidates = (
        [execution]
        if execution.startswith("arn:")
        else [_execution_arn(machine, execution) for machine in machines]
    )
    described: dict[str, Any] | None = None
    for arn in candidates:
        try:
            described = dict(sfn.describe_execution(executionArn=arn))
            break
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "ExecutionDoesNotExist",
                "InvalidArn",
            ):
                raise
    if described is None or described.get("stateMachineArn") not in machines:
        raise ActionError(
            f"no retrain or release execution {execution!r}; `tuneloop runs list` shows them",
            exit_code=USAGE,
        )
    if described.get("status") != "RUNNING":
        raise ActionError(
            f"{described.get('name', execution)} is {described.get('status')}, not running",
            exit_code=CONFLICT,
        )
    arn = str(described["executionArn"])
    sfn.stop_execution(
        executionArn=arn, error="StoppedByOperator", cause=f"stopped by {actor.name}"
    )
    _audit(
        names,
        actor,
        "run_stopped",
        str(described.get("name", arn.rsplit(":", 1)[-1])),
        {"status": "RUNNING", "execution_arn": arn},
        {"status": "ABORTED", "execution_arn": arn},
    )


def _execution_arn(state_machine_arn: str, name: str) -> str:
    # arn:aws:states:<region>:<account>:stateMachine:<machine> → ...:execution:<machine>:<name>
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


# -- benchmarks ----------------------------------------------------------------------------
def create_benchmark(
    names: PlatformNames, actor: Actor, name: str, lines: bytes | str
) -> BenchmarkCreated:
    """Store a new version of custom benchmark ``name`` (validated first; nothing is written
    for an invalid file). The same content again returns the existing version."""
    data = lines.encode() if isinstance(lines, str) else bytes(lines)
    store = BenchmarkStore(table=names.benchmarks_table, bucket=names.artifacts_bucket)
    source = f"{name}.jsonl"
    try:
        version, created = store.create_from_bytes(name, data, source=source)
    except BenchmarkError as exc:
        raise BenchmarkValidationError(name, benchmark_problems(name, data, exc)) from exc
    result = BenchmarkCreated(
        name=name,
        version=version.version,
        item_count=version.item_count,
        created=created,
        s3_uri=version.s3_uri,
        tags=dict(version.tags),
    )
    if created:
        previous = [v for v in store.versions(name) if v.version != version.version]
        before = (
            {"version": previous[-1].version, "item_count": previous[-1].item_count}
            if previous
            else {}
        )
        _audit(
            names,
            actor,
            "benchmark_created",
            f"benchmark {name}",
            before,
            {
                "version": version.version,
                "item_count": version.item_count,
                "s3_uri": version.s3_uri,
            },
        )
    return result


def run_benchmark(
    names: PlatformNames, actor: Actor, model_version: str, suite: str, version: str = LATEST
) -> BenchmarkRunStarted:
    """Score ``model_version`` on ``suite`` (its ``version``, default the latest) as a
    SageMaker job: the benchmark run state machine, whose score lands on the version item."""
    arn = names.require("benchmark_run_state_machine_arn")
    item = versions.get_version(names.model_versions_table, model_version)
    if item is None:
        raise ActionError(
            f"no model version {model_version!r}; `tuneloop models list` shows the versions",
            exit_code=USAGE,
        )
    if not item.get("model_data_url"):
        raise ActionError(
            f"{model_version} has no model archive yet (status {item.get('status', '?')}); "
            "only trained versions can be benchmarked",
            exit_code=CONFLICT,
        )
    try:
        request = RunRequest(model_version=model_version, suite=suite, version=version or LATEST)
        if request.suite != MMLU:
            check_name(request.suite)
            check_version_spec(request.version)
            store = BenchmarkStore(table=names.benchmarks_table, bucket=names.artifacts_bucket)
            if store.versions(suite) or request.version != LATEST:
                request = replace(request, version=store.resolve(suite, request.version).version)
            elif not _hand_uploaded(names, suite):
                raise LookupError(f"no benchmark {suite!r}")
    except (ValueError, LookupError) as exc:
        raise ActionError(
            f"{exc}; `tuneloop benchmarks list` shows the suites", exit_code=USAGE
        ) from exc
    stamp = f"{datetime.now(UTC):%Y%m%d-%H%M%S}"
    name = re.sub(r"[^0-9A-Za-z_-]", "-", f"{model_version[:40]}-{suite[:20]}-{stamp}")
    execution_arn = aws.stepfunctions().start_execution(
        stateMachineArn=arn, name=name, input=json.dumps(asdict(request))
    )["executionArn"]
    _audit(
        names,
        actor,
        "benchmark_run_started",
        f"benchmark {suite}",
        {},
        {"model_version": model_version, "version": request.version, "execution": name},
    )
    return BenchmarkRunStarted(name, execution_arn, model_version, suite, request.version)


def _hand_uploaded(names: PlatformNames, suite: str) -> bool:
    """Whether ``benchmarks/<suite>.jsonl`` was put in the bucket by hand (not the store)."""
    try:
        aws.s3().head_object(Bucket=names.artifacts_bucket, Key=f"benchmarks/{suite}.jsonl")
    except ClientError:
        return False
    return True


def benchmark_problems(name: str, data: bytes, first: BenchmarkError) -> list[BenchmarkProblem]:
    """Every line's problem, not only the first: each non-blank line is validated alone
    (problems that need the whole file, such as mixed kinds, come from ``first``)."""
    from tuneloop.benchmarks.store import validate_bytes

    problems: list[BenchmarkProblem] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            validate_bytes(name, line + b"\n", f"{name}.jsonl")
        except BenchmarkError as exc:
            problems.append(BenchmarkProblem(number, exc.field, exc.problem))
    if not problems or first.line is None:
        problems.insert(0, BenchmarkProblem(first.line, first.field, first.problem))
    return problems


# -- gate policy ---------------------------------------------------------------------------
def gate_policy(names: PlatformNames, model_line: str = "") -> dict[str, Any]:
    """The policy in force: an admin's (Control ``gate_policy``, or ``gate_policy#<line>``
    for a model line), else the stage's (a line's own policy, else the stage's)."""
    stored = policies.stored_policy(names.control_table, model_line)
    if stored is not None:
        return stored.to_dict()
    if model_line:
        own = names.lines().get(model_line).gate_policy
        if own is not None:
            return own.to_dict()
    return _stage_policy(names.stage)


def set_gate_policy(
    names: PlatformNames, actor: Actor, policy: Mapping[str, Any], model_line: str = ""
) -> GatePolicyChange:
    """Replace the gate policy in force (of ``model_line`` on a stage with model lines, whose
    runs each gate by their line's); validated by the same code as at synth."""
    line = chosen_line(names, model_line, verb="set the gate policy of")
    try:
        parse_policy(dict(policy), source=policies.SOURCE)
    except PolicyError as exc:
        raise ActionError(f"{exc}; nothing was changed", exit_code=USAGE) from exc
    before = gate_policy(names, line)
    after = policies.store_policy(
        names.control_table, policy, by=actor.name, model_line=line
    ).to_dict()
    target = f"{GATE_POLICY_TARGET} of line {line}" if line else GATE_POLICY_TARGET
    record = _audit(names, actor, "gate_policy_changed", target, before, after)
    return GatePolicyChange(before, after, record.request_id if record else "")


def _stage_policy(stage: str) -> dict[str, Any]:
    # The stage's policy lives in its config (validated at synth); where the CDK side is not
    # shipped (the console's Lambda) there is none to show until an admin stores one.
    try:
        config = importlib.import_module("stacks.config")
    except ImportError:
        return {}
    try:
        return dict(config.load_stage_config(stage, {}).gate_policy.to_dict())
    except Exception:  # an unknown stage has no policy to show
        return {}


# -- audit ---------------------------------------------------------------------------------
def _audit(
    names: PlatformNames,
    actor: Actor,
    action: str,
    target: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
) -> audit.AuditRecord:
    return audit.append(
        names.require("audit_table"), actor, action, target, before=before, after=after
    )
