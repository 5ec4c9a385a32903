"""`tuneloop models|runs|deploy|rollback|freeze|unfreeze|audit|status`: the operations CLI.

Exit codes: 0 ok, 1 failure, 2 usage (unknown version, bad input), 3 conflict (not allowed now).
Errors go to stderr with what to do; ``--json`` prints the views' dicts for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from tuneloop.operations.tables import details, table

if TYPE_CHECKING:  # the views load boto3: imported where a command needs them
    from tuneloop.operations.views_lines import LineProductionView

OK, FAILURE, USAGE, CONFLICT = 0, 1, 2, 3
# The columns people read; --json has every field.
MODEL_COLUMNS = (
    "version",
    "status",
    "created_at",
    "record_count",
    "parent_version",
    "gate_summary",
)
RUN_COLUMNS = ("name", "state_machine", "status", "started_at", "duration_seconds", "outcome")
AUDIT_COLUMNS = ("at", "actor", "action", "target", "source")
LINE_COLUMNS = (
    "model_line",
    "version",
    "since",
    "last_known_good",
    "component_status",
    "last_rollback",
)
COMMANDS = (
    "models",
    "runs",
    "deploy",
    "rollback",
    "freeze",
    "unfreeze",
    "audit",
    "status",
    "backfill-indexes",
)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", help="the stage (default: $TUNELOOP_STAGE, else cdk.json's)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _line_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument(
        "--line",
        dest="model_line",
        metavar="NAME",
        help=f"{text} (required when the stage has model lines; `tuneloop status` lists them)",
    )


def add_parser(commands: Any) -> None:
    """Add the operations subcommands to the top-level parser."""
    models = commands.add_parser("models", help="model versions: list, show, compare")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    listing = models_sub.add_parser("list", help="the newest versions, newest first")
    listing.add_argument(
        "--limit", type=_positive, default=100, help="how many versions (default 100)"
    )
    _common(listing)
    show = models_sub.add_parser("show", help="one version's lineage")
    show.add_argument("version")
    _common(show)
    bench = models_sub.add_parser(
        "benchmark", help="score a version on one suite, as a SageMaker job (operator)"
    )
    bench.add_argument("version")
    bench.add_argument("suite", help="a custom suite's name, or mmlu")
    bench.add_argument("--suite-version", default="latest", help="default: the latest")
    _common(bench)
    compare = models_sub.add_parser("compare", help="two versions side by side")
    compare.add_argument("a")
    compare.add_argument("b")
    _common(compare)

    runs = commands.add_parser("runs", help="retrain runs: list, show, start, stop")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    _common(runs_sub.add_parser("list", help="recent runs"))
    run_show = runs_sub.add_parser("show", help="one run's stage timeline")
    run_show.add_argument("id")
    _common(run_show)
    run_start = runs_sub.add_parser("start", help="start a retrain run now")
    _line_option(run_start, "the model line to retrain")
    _common(run_start)
    stop = runs_sub.add_parser("stop", help="stop a running run")
    stop.add_argument("id")
    _common(stop)

    deploy = commands.add_parser("deploy", help="deploy an approved version")
    deploy.add_argument("version")
    _line_option(deploy, "the model line to deploy it on")
    _common(deploy)
    rollback = commands.add_parser("rollback", help="restore last-known-good (or --to VERSION)")
    rollback.add_argument("--to", dest="to_version", help="an earlier approved version")
    _line_option(rollback, "the model line to roll back; the other lines keep serving")
    _common(rollback)
    freeze = commands.add_parser("freeze", help="hold automatic deploys")
    freeze.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    _common(freeze)
    _common(commands.add_parser("unfreeze", help="let automatic deploys through again"))
    audit = commands.add_parser("audit", help="the audit trail, newest first")
    audit.add_argument("--who")
    audit.add_argument("--action")
    audit.add_argument("--target")
    audit.add_argument("--limit", type=int, default=50)
    _common(audit)
    _common(commands.add_parser("status", help="production, freeze and alarms"))
    _common(
        commands.add_parser(
            "backfill-indexes",
            help="list drops and versions written before the by_month indexes (once, after "
            "upgrading)",
        )
    )


def _dump(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _models(names: Any, args: argparse.Namespace) -> tuple[Any, Callable[[Any], str]]:
    from tuneloop.operations import views

    if args.models_command == "list":
        columns = (*MODEL_COLUMNS, "model_line") if names.lines() else MODEL_COLUMNS
        return views.list_models(names, limit=args.limit), partial(table, columns=columns)
    if args.models_command == "show":
        return views.model_detail(names, args.version), details
    if args.models_command == "benchmark":
        from tuneloop.operations import actions
        from tuneloop.operations.audit import Actor

        started = actions.run_benchmark(
            names, Actor.from_iam("cli"), args.version, args.suite, args.suite_version
        )
        return started, details
    return views.compare_models(names, args.a, args.b), details


def _runs(names: Any, args: argparse.Namespace, actor: Any) -> tuple[Any, Callable[[Any], str]]:
    from tuneloop.operations import actions, views_runs

    if args.runs_command == "list":
        return views_runs.list_runs(names), partial(table, columns=RUN_COLUMNS)
    if args.runs_command == "show":
        return views_runs.run_detail(names, args.id), details
    if args.runs_command == "start":
        return actions.start_run(names, actor, model_line=args.model_line), details
    actions.stop_run(names, actor, args.id)
    return {"stopped": args.id}, details


def _line_row(line: LineProductionView) -> dict[str, Any]:
    """One line of `tuneloop status`: flat, so the text output is one table row per line
    (``component_status`` None: the line has no inference component yet)."""
    component = line.component
    return {
        "model_line": line.model_line,
        "version": line.version,
        "since": line.since,
        "last_known_good": line.last_known_good,
        "last_rollback": line.last_rollback,
        "component_status": component.status if component else None,
        "component_failure_reason": component.failure_reason if component else "",
        "datasets": list(line.datasets),
    }


def _status_text(data: dict[str, Any]) -> str:
    """`tuneloop status` for people: the endpoint's production and alarms, then one row per
    model line."""
    rest = {key: value for key, value in data.items() if key != "model_lines"}
    text = details(rest)
    if "model_lines" in data:
        rows = table(data["model_lines"], columns=LINE_COLUMNS).splitlines()
        text += "\nmodel_lines:\n" + "\n".join(f"  {row}" for row in rows)
    return text


def _dispatch(names: Any, args: argparse.Namespace) -> tuple[Any, Callable[[Any], str]]:
    from tuneloop.operations import actions, views, views_data
    from tuneloop.operations.audit import Actor

    command = args.command
    if command == "models":
        return _models(names, args)
    if command == "audit":
        records = views.audit_records(
            names, who=args.who, action=args.action, target=args.target, limit=args.limit
        )
        columns = (*AUDIT_COLUMNS, "model_line") if names.lines() else AUDIT_COLUMNS
        return records, partial(table, columns=columns)
    if command == "status":
        status = {
            "production": _dump(views.production(names)),
            "alarms": _dump(views_data.alarm_states(names)),
        }
        if names.lines():
            status["model_lines"] = [_line_row(line) for line in views.line_productions(names)]
        return status, _status_text
    if command == "backfill-indexes":
        from tuneloop.month_index import backfill

        drops = backfill(
            names.drops_table, "drop_id", "started_month", "started_at", skip_attribute="segment_of"
        )
        versions = backfill(
            names.model_versions_table, "model_version", "created_month", "created_at"
        )
        return {"drops_indexed": drops, "versions_indexed": versions}, details
    actor = Actor.from_iam("cli")
    if command == "runs":
        return _runs(names, args, actor)
    if command == "deploy":
        started = actions.deploy_version(names, actor, args.version, model_line=args.model_line)
        return started, details
    if command == "rollback":
        result = actions.roll_back(
            names, actor, to_version=args.to_version, model_line=args.model_line
        )
        return result, details
    if command == "freeze":
        return actions.freeze(names, actor, args.reason), details
    return actions.unfreeze(names, actor), details


def run_command(args: argparse.Namespace) -> int:
    """Run one operations command; returns the exit code."""
    from tuneloop.operations.actions import ActionError
    from tuneloop.operations.names import NamesError, PlatformNames, default_stage
    from tuneloop.operations.views import ViewError
    from tuneloop.operations.views_runs import RunNotFoundError

    try:
        names = PlatformNames.for_stage(default_stage(args.stage))
        result, render = _dispatch(names, args)
    except ActionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except (ViewError, RunNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    except NamesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILURE
    data = _dump(result)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(render(data))
    return OK
