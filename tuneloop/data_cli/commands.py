"""``tuneloop data push|drops|show``: push data drops and read what the ingestion made of them.

The raw bucket and the Drops table come from ``--bucket``/``--table`` or the environment
variables ``TUNELOOP_RAW_BUCKET`` and ``TUNELOOP_DROPS_TABLE``. AWS credentials, region and
``AWS_ENDPOINT_URL`` are boto3's usual ones.

    tuneloop data push exports/ --dataset support --source zendesk --tag eu --map text=body
    tuneloop data drops --dataset support --limit 10
    tuneloop data show 3f2a9c1e                # a drop id, a unique 8+ character prefix,
    tuneloop data show drops/support/20260101T120000Z-a1b2c3/tickets.jsonl   # or its key
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from tuneloop.data_cli import inspect
from tuneloop.data_cli.push import PushError, build_manifest, parse_mapping, progress_target, push

BUCKET_ENV = "TUNELOOP_RAW_BUCKET"
TABLE_ENV = "TUNELOOP_DROPS_TABLE"
COUNTS = ("received", "stored", "duplicate", "near_duplicate", "quarantined")


class CommandError(RuntimeError):
    """Missing configuration, reported as ``error: ...`` with exit code 2."""


def add_parser(commands: Any) -> None:
    """Register ``data`` and its subcommands on the top-level subparsers."""
    parser = commands.add_parser(
        "data",
        help="push data drops to the raw bucket and inspect their manifests",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="data_command", required=True)

    pushing = sub.add_parser("push", help="upload a drop file or a folder of drop files")
    pushing.add_argument("path", type=Path, help="a drop file, or a folder of them")
    pushing.add_argument("--bucket", help=f"raw bucket name (default: ${BUCKET_ENV})")
    pushing.add_argument("--dataset", default="default", help="dataset name (default: default)")
    pushing.add_argument("--source", help="source system, recorded in the push's manifest")
    pushing.add_argument(
        "--tag", action="append", default=[], help="a tag for every record (repeatable)"
    )
    pushing.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="CANONICAL=SOURCE",
        help="read a canonical field from another source field, e.g. text=body (repeatable)",
    )
    pushing.add_argument(
        "--progress", action="store_true", help="report progress on stderr even when not a TTY"
    )
    pushing.set_defaults(func=_push)
    _stage_option(pushing)

    listing = sub.add_parser("drops", help="drop manifests with their counts, newest first")
    listing.add_argument("--table", help=f"Drops table name (default: ${TABLE_ENV})")
    listing.add_argument("--dataset", help="only this dataset")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    listing.set_defaults(func=_drops)
    _stage_option(listing)

    show = sub.add_parser("show", help="one drop: counts, reasons, quarantined lines")
    show.add_argument("drop", help="drop id, unique id prefix (8+ characters) or S3 key")
    show.add_argument("--table", help=f"Drops table name (default: ${TABLE_ENV})")
    show.add_argument("--sample", type=int, default=5, help="quarantined lines to show (default 5)")
    show.set_defaults(func=_show)
    _stage_option(show)


def run_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run a parsed ``data`` command; user errors print one line, not a trace."""
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    try:
        return func(args, out or sys.stdout)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (PushError, inspect.DropLookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:  # e.g. NoSuchBucket, ResourceNotFoundException
        error = exc.response.get("Error", {})
        print(f"error: {error.get('Code', 'AWS')}: {error.get('Message', exc)}", file=sys.stderr)
        return 1


def _stage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", help="find the bucket and table from this stage's stack outputs")


def _setting(
    value: str | None, flag: str, env: str, what: str, *, stage: str | None = None, field: str = ""
) -> str:
    value = value or os.environ.get(env)
    if not value and stage:
        # Same names as `tuneloop models` etc.: the stage's stack outputs.
        from tuneloop.operations.names import NamesError, PlatformNames

        try:
            value = getattr(PlatformNames.for_stage(stage), field)
        except NamesError as exc:
            raise CommandError(str(exc)) from exc
    if not value:
        raise CommandError(f"say which {what}: --{flag} or ${env}")
    return value


def _push(args: argparse.Namespace, out: TextIO) -> int:
    bucket = _setting(
        args.bucket,
        "bucket",
        BUCKET_ENV,
        "raw bucket to push to",
        stage=getattr(args, "stage", None),
        field="raw_bucket",
    )
    manifest = build_manifest(args.dataset, args.source, args.tag, parse_mapping(args.map))
    stream, interactive = progress_target(args.progress)
    result = push(
        args.path,
        bucket=bucket,
        dataset=args.dataset,
        manifest=manifest,
        progress_stream=stream,
        interactive=interactive,
    )
    if result.manifest_key:
        print(f"manifest s3://{bucket}/{result.manifest_key}", file=sys.stderr)
    for key in result.keys:
        print(f"s3://{bucket}/{key}", file=out)
    print(
        f"pushed {len(result.keys)} file(s), {result.bytes / 1e6:.1f} MB to "
        f"s3://{bucket}/{result.prefix}; see `tuneloop data drops --dataset {args.dataset}`",
        file=sys.stderr,
    )
    return 0


def _count(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    return "-" if value is None else str(int(value))


def _drops(args: argparse.Namespace, out: TextIO) -> int:
    if args.limit < 1:
        raise inspect.DropLookupError("--limit must be at least 1")
    table = _setting(
        args.table,
        "table",
        TABLE_ENV,
        "Drops table to read",
        stage=getattr(args, "stage", None),
        field="drops_table",
    )
    items = inspect.list_drops(table, dataset=args.dataset, limit=args.limit)
    if not items:
        print("no drops" + (f" in dataset {args.dataset}" if args.dataset else ""), file=out)
        return 0
    print(
        f"{'started':<20} {'drop':<12} {'status':<10} {'received':>8} {'stored':>7} "
        f"{'dup':>6} {'near':>6} {'quar':>6}  key",
        file=out,
    )
    for item in items:
        print(
            f"{str(item.get('started_at', ''))[:19]:<20} {str(item['drop_id'])[:12]:<12} "
            f"{item.get('status', '')!s:<10} {_count(item, 'received'):>8} "
            f"{_count(item, 'stored'):>7} {_count(item, 'duplicate'):>6} "
            f"{_count(item, 'near_duplicate'):>6} {_count(item, 'quarantined'):>6}  "
            f"{item.get('key', '')}",
            file=out,
        )
    return 0


def _by_count(values: Any) -> list[tuple[str, int]]:
    counts = {str(k): int(v) for k, v in dict(values or {}).items()}
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))


def _show(args: argparse.Namespace, out: TextIO) -> int:
    if args.sample < 0:
        raise inspect.DropLookupError("--sample must be 0 or more")
    table = _setting(
        args.table,
        "table",
        TABLE_ENV,
        "Drops table to read",
        stage=getattr(args, "stage", None),
        field="drops_table",
    )
    item = inspect.find_drop(table, args.drop)
    print(f"drop {item['drop_id']}", file=out)
    print(f"  key       s3://{item.get('bucket', '?')}/{item.get('key', '')}", file=out)
    print(f"  dataset   {item.get('dataset', '')}", file=out)
    print(f"  status    {item.get('status', '')}", file=out)
    for stamp in ("started_at", "completed_at"):
        if stamp in item:
            print(f"  {stamp.removesuffix('_at'):<9} {item[stamp]}", file=out)
    print("  " + ", ".join(f"{name} {_count(item, name)}" for name in COUNTS), file=out)
    reasons = _by_count(item.get("reasons"))
    print("reasons" + ("" if reasons else ": none"), file=out)
    for code, count in reasons:
        print(f"  {code:<24} {count:>7}", file=out)
    redactions = _by_count(item.get("redactions"))
    print("redactions" + ("" if redactions else ": none"), file=out)
    for kind, count in redactions:
        print(f"  {kind:<24} {count:>7}", file=out)
    uri = str(item.get("quarantine_uri") or "")
    if uri and args.sample:
        sample = inspect.quarantine_sample(uri, args.sample)
        print(f"quarantined lines (first {len(sample)} of {uri}):", file=out)
        for entry in sample:
            # The message names the file, line and field.
            print(f"  [{entry.get('reason', '')}] {entry.get('message', '')}", file=out)
            print(f"    {_clip(str(entry.get('raw', '')))}", file=out)
    return 0


def _clip(text: str, width: int = 160) -> str:
    flat = text.replace("\n", "\\n")
    return flat if len(flat) <= width else flat[: width - 1] + "…"
