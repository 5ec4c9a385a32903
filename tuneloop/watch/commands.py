"""`tuneloop watch ...`: the watch checks, started now instead of on their schedule.

    tuneloop watch evaluate [--stage dev] [--json]
    tuneloop watch drift [--stage dev] [--json] [--hours N]

``evaluate`` invokes the ContinuousEvaluation function with the input its schedule sends
(the time is now): one benchmark run per gate suite on the production version. ``drift``
invokes the DriftCheck function on the window ending now (``--hours``: its length instead
of the stage's ``window_hours``) and prints the verdict, each feature's PSI and p-value and
the report's S3 URI. Further checks add their subcommand to the same group
(:func:`add_parser`).
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
        help="run a watch check now (continuous evaluation, drift)",
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
    drift = sub.add_parser(
        "drift", help="compare the endpoint's captured prompts with the training data now"
    )
    drift.add_argument("--stage", help="the stage (default: $TUNELOOP_STAGE, else cdk.json's)")
    drift.add_argument("--json", action="store_true", help="print JSON for scripts")
    drift.add_argument(
        "--hours",
        type=_hours,
        help="the window: this many hours up to now (default: the stage's window_hours)",
    )
    drift.set_defaults(func=_drift)
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


def _hours(text: str) -> int:
    from tuneloop.watch.drift_settings import MAX_WINDOW_HOURS

    try:
        hours = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of hours: {text!r}") from None
    if not 1 <= hours <= MAX_WINDOW_HOURS:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_WINDOW_HOURS}, got {hours}")
    return hours


def _drift(args: argparse.Namespace) -> int:
    from tuneloop.operations.names import NamesError
    from tuneloop.watch.drift_service import DriftCheckFailedError, run_drift_check_now

    try:
        result = run_drift_check_now(args.stage, hours=args.hours)
    except (NamesError, DriftCheckFailedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILURE
    print(json.dumps(result, indent=2) if args.json else render_drift(result))
    return OK


def render_drift(result: dict[str, Any]) -> str:
    """The verdict, one line per feature and the classifier, and where the report is."""
    verdict = {"drift": "DRIFT", "no_drift": "no drift"}.get(
        str(result.get("status")), "not judged"
    )
    lines = [
        f"drift check of {result.get('endpoint', '?')} "
        f"({result.get('window_start', '?')} to {result.get('window_end', '?')}, "
        f"model {result.get('model_version') or '-'}): {verdict}",
        f"  {result.get('summary', '')}",
    ]
    for feature in result.get("features") or []:
        mark = "  drift" if feature["drift"] else ""
        lines.append(
            f"  {feature['name']:<14} PSI {feature['psi']:6.3f}  p {feature['p_value']:.3g}{mark}"
        )
    classifier = result.get("classifier")
    if classifier:
        mark = "  drift" if classifier["drift"] else ""
        lines.append(
            f"  {'classifier':<14} AUC {classifier['auc']:.3f} "
            f"(bound {classifier['auc_lower_bound']:.3f}){mark}"
        )
    if result.get("report_uri"):
        lines.append(f"  report: {result['report_uri']}")
    if result.get("retrain_drop"):
        lines.append(f"  retrain drop: {result['retrain_drop']}")
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    """What was started, one line per suite (per line's suite with model lines)."""
    if "model_lines" in result:
        return "\n".join(_render_line(line) for line in result["model_lines"])
    if not result.get("model_version"):
        return str(result.get("note") or "nothing started")
    lines = [f"continuous evaluation of {result['model_version']}:"]
    for run in result.get("runs", []):
        where = run.get("execution_name") or "not started"
        note = f" ({run['note']})" if run.get("note") else ""
        lines.append(f"  {run['suite']} @ {run.get('version') or '-'}: {where}{note}")
    return "\n".join(lines)


def _render_line(result: dict[str, Any]) -> str:
    line = str(result.get("model_line", ""))
    if not result.get("model_version"):
        return f"{line}: {result.get('note') or 'nothing started'}"
    return render({**result, "model_version": f"{result['model_version']} (model line {line})"})
