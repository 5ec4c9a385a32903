"""`tuneloop watch ...`: the watch checks, started now instead of on their schedule.

    tuneloop watch evaluate [--stage dev] [--json]

``evaluate`` invokes the ContinuousEvaluation function with the input its schedule sends
(the time is now): one benchmark run per gate suite on the production version. Further
checks add their subcommand to the same group (:func:`add_parser`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

OK, FAILURE = 0, 1


def add_parser(commands: Any) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Register ``watch`` on the top-level subparsers; returns its subcommands."""
    parser = commands.add_parser(
        "watch",
        help="run a watch check now (continuous evaluation, ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="watch_command", required=True
    )
    evaluate = sub.add_parser(
        "evaluate", help="re-score the production version on the gate's suites now"
    )
    evaluate.add_argument("--stage", help="the stage (default: $TUNELOOP_STAGE, else cdk.json's)")
    evaluate.add_argument("--json", action="store_true", help="print JSON for scripts")
    evaluate.set_defaults(func=_evaluate)
    return sub


def _evaluate(args: argparse.Namespace) -> int:
    from tuneloop import aws
    from tuneloop.operations.names import NamesError, PlatformNames, default_stage
    from tuneloop.watch.evaluation import schedule_input

    try:
        names = PlatformNames.for_stage(default_stage(args.stage))
        function = names.require("continuous_evaluation_function")
    except NamesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILURE
    response = aws.client("lambda").invoke(
        FunctionName=function,
        InvocationType="RequestResponse",
        Payload=json.dumps(schedule_input()).encode(),
    )
    payload = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        message = payload.get("errorMessage", payload) if isinstance(payload, dict) else payload
        print(
            f"error: the ContinuousEvaluation function {function} failed: {message}",
            file=sys.stderr,
        )
        return FAILURE
    if args.json:
        print(json.dumps(payload, indent=2))
        return OK
    print(render(payload))
    return OK


def render(result: dict[str, Any]) -> str:
    """What was started, one line per suite."""
    if not result.get("model_version"):
        return str(result.get("note") or "nothing started")
    lines = [f"continuous evaluation of {result['model_version']}:"]
    for run in result.get("runs", []):
        where = run.get("execution_name") or "not started"
        note = f" ({run['note']})" if run.get("note") else ""
        lines.append(f"  {run['suite']} @ {run.get('version') or '-'}: {where}{note}")
    return "\n".join(lines)
