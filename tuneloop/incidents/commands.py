"""`tuneloop incidents list|show|ack|resolve`: the incidents the alarms opened.

    tuneloop incidents list [--status open|acknowledged|resolved] [--limit N]
    tuneloop incidents show ID
    tuneloop incidents ack ID [--note TEXT]
    tuneloop incidents resolve ID --root-cause TEXT

``ack`` and ``resolve`` are recorded in the audit trail with the caller's IAM principal.
Exit codes: 0 ok, 1 failure, 2 unknown incident, 3 not allowed now (e.g. resolved already).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tuneloop.incidents.record import STATUSES, Incident

OK, FAILURE, USAGE, CONFLICT = 0, 1, 2, 3
LIST_COLUMNS = ("incident_id", "status", "opened_at", "alarm_name", "model_version")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "incidents",
        help="incidents opened by alarms: list, show, ack, resolve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="incidents_command", required=True)
    listing = sub.add_parser("list", help="the newest incidents, newest first")
    listing.add_argument("--status", choices=STATUSES, action="append", help="repeatable")
    listing.add_argument("--limit", type=int, default=50)
    show = sub.add_parser("show", help="one incident: context, changes, timeline")
    show.add_argument("incident_id")
    ack = sub.add_parser("ack", help="say someone is on it")
    ack.add_argument("incident_id")
    ack.add_argument("--note", default="", help="kept on the incident and in the audit trail")
    resolve = sub.add_parser("resolve", help="close it with a root-cause note")
    resolve.add_argument("incident_id")
    resolve.add_argument("--root-cause", required=True, help="what caused it; kept with it")
    for command in (listing, show, ack, resolve):
        command.add_argument(
            "--stage", help="the stage (default: $TUNELOOP_STAGE, else cdk.json's)"
        )
        command.add_argument("--json", action="store_true", help="print JSON for scripts")
        command.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from tuneloop.incidents import actions, store
    from tuneloop.operations.audit import Actor
    from tuneloop.operations.names import NamesError, PlatformNames, default_stage

    try:
        names = PlatformNames.for_stage(default_stage(args.stage))
        table = names.require("incidents_table")
        command = args.incidents_command
        if command == "list":
            listed = store.list_incidents(table, limit=args.limit, statuses=args.status or ())
            return _print(args, [i.to_dict() for i in listed], render_list(listed))
        if command == "show":
            incident = store.get_incident(table, args.incident_id)
        elif command == "ack":
            incident = actions.acknowledge_incident(
                names, Actor.from_iam("cli"), args.incident_id, args.note
            )
        else:
            incident = actions.resolve_incident(
                names, Actor.from_iam("cli"), args.incident_id, args.root_cause
            )
        return _print(args, incident.to_dict(), render_incident(incident))
    except store.IncidentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE if "no incident" in str(exc) else CONFLICT
    except NamesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILURE


def _print(args: argparse.Namespace, data: Any, text: str) -> int:
    print(json.dumps(data, indent=2, default=str) if args.json else text)
    return OK


def render_list(incidents: list[Incident]) -> str:
    if not incidents:
        return "no incidents"
    rows = [
        [i.incident_id, i.status, i.opened_at, i.alarm_name, i.model_version] for i in incidents
    ]
    widths = [max(len(str(r[c])) for r in [list(LIST_COLUMNS), *rows]) for c in range(5)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(LIST_COLUMNS, widths, strict=True))]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def render_incident(incident: Incident) -> str:
    """The incident as a person reads it: what, when, which version, what changed, timeline."""
    from tuneloop.incidents.notify import describe_changes

    production = incident.production
    lines = [
        f"{incident.incident_id}  {incident.status}  opened {incident.opened_at}",
        f"alarm: {incident.alarm_name}",
        f"what happened: {incident.summary or incident.reason}",
    ]
    if incident.reason and incident.summary:
        lines.append(f"reason: {incident.reason}")
    if production:
        since = f" since {production['since']}" if production.get("since") else ""
        line = f" on model line {production['model_line']}" if production.get("model_line") else ""
        lines.append(f"in production when it fired: {production.get('model_version')}{since}{line}")
    if incident.deploying:
        since = f" since {incident.deploying['since']}" if incident.deploying.get("since") else ""
        lines.append(
            f"being deployed when it fired: {incident.deploying.get('model_version')}{since}"
        )
    if incident.last_known_good:
        lines.append(f"last-known-good: {incident.last_known_good.get('model_version')}")
    metric = incident.metric
    if metric.get("name"):
        lines.append(
            f"metric: {metric.get('namespace')}/{metric.get('name')} {metric.get('statistic')} "
            f"{metric.get('comparison')} {metric.get('threshold')}"
        )
        values = ", ".join(f"{v['at'][11:19]} {v['value']:.4g}" for v in incident.metric_values)
        lines.append(f"  values: {values or '(none)'}")
    if incident.automatic_response:
        lines.append(f"automatic response: {incident.automatic_response}")
    if incident.failure:
        failure = incident.failure
        lines.append(f"failed run: {failure.get('model_version')}: {failure.get('error')}")
        if failure.get("cause"):
            lines.append(f"  {str(failure['cause'])[:500]}")
    for action in incident.automatic_actions:
        lines.append(f"done automatically: {action.get('text') or action.get('action')}")
    lines += describe_changes(incident.changes)
    if incident.runbook:
        lines.append(f"runbook: {incident.runbook}")
    if incident.root_cause:
        lines.append(f"root cause: {incident.root_cause}")
    lines.append("timeline:")
    lines += [f"  {e.get('at')}  {e.get('event')}: {e.get('text')}" for e in incident.timeline]
    return "\n".join(lines)
