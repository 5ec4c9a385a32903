"""The `tuneloop` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    # Nothing in the demo may reach a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tuneloop.local.demo import run_demo
    from tuneloop.local.platform import default_work_dir

    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir()
    assembly = Path(args.assembly).resolve() if args.assembly else None
    return run_demo(
        work_dir,
        base_model=args.base_model,
        assembly=assembly,
        enforce_permissions=False if args.no_enforce else None,
    )


def _up(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tuneloop.local.up import default_up_dir, run_up

    return run_up(
        Path(args.work_dir) if args.work_dir else default_up_dir(),
        port=args.port,
        examples=args.examples,
        base_model=args.base_model,
        enforce_permissions=False if args.no_enforce else None,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneloop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run the whole loop on this machine against the embedded AWS emulator"
    )
    demo.add_argument("--work-dir", help="where the local platform keeps its state and logs")
    demo.add_argument(
        "--base-model", help="base model reference (default: the stage's, SmolLM2-135M-Instruct)"
    )
    demo.add_argument(
        "--assembly",
        help="deploy this cloud assembly (a `cdk synth` output folder) instead of synthesizing",
    )
    demo.add_argument(
        "--no-enforce",
        action="store_true",
        help="log permission denials without refusing the calls (for debugging; "
        "also TUNELOOP_ENFORCE_IAM=0)",
    )
    demo.set_defaults(func=_demo)
    up = commands.add_parser(
        "up",
        help="start the local platform (emulator, stacks, console) and keep it running",
    )
    up.add_argument("--examples", action="store_true", help="load the example benchmarks and drops")
    up.add_argument("--port", type=int, default=8000, help="the console's port (default 8000)")
    up.add_argument("--work-dir", help="where the platform keeps its logs while it runs")
    up.add_argument("--base-model", help="base model reference (default: the stage's)")
    up.add_argument(
        "--no-enforce", action="store_true", help="log permission denials without refusing"
    )
    up.set_defaults(func=_up)
    from tuneloop.benchmarks.commands import add_parser as add_benchmarks

    add_benchmarks(commands)
    from tuneloop.data_cli.commands import add_parser as add_data

    add_data(commands)
    from tuneloop.connectors.commands import add_parser as add_connectors

    add_connectors(commands)
    from tuneloop.operations.commands import add_parser as add_operations

    add_operations(commands)
    from tuneloop.watch.commands import add_parser as add_watch

    add_watch(commands)  # the one `watch` group: each check adds its subcommand there
    from tuneloop.planning.commands import add_parser as add_plan

    add_plan(commands)
    from tuneloop.incidents.commands import add_parser as add_incidents

    add_incidents(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "benchmarks":
        from tuneloop.benchmarks.commands import run_command

        return run_command(args)
    if args.command == "data":
        from tuneloop.data_cli.commands import run_command as run_data_command

        return run_data_command(args)
    from tuneloop.operations.commands import COMMANDS
    from tuneloop.operations.commands import run_command as run_operations

    if args.command in COMMANDS:
        return run_operations(args)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
