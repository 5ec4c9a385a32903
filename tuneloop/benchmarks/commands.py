"""``tuneloop benchmarks create|list|show|run``: manage and try custom benchmarks.

The table and bucket come from ``--table``/``--bucket`` or the environment variables
``TUNELOOP_BENCHMARKS_TABLE`` and ``TUNELOOP_ARTIFACTS_BUCKET`` (the Storage stack's
Benchmarks table and artifacts bucket). AWS credentials, region and ``AWS_ENDPOINT_URL``
are boto3's usual ones.

    tuneloop benchmarks create company_faq examples/benchmarks/acme_support.jsonl
    tuneloop benchmarks list
    tuneloop benchmarks show company_faq
    tuneloop benchmarks run company_faq --model ./my-model   # or s3://.../model.tar.gz
    tuneloop benchmarks run company_faq --model mv-20261202-0915   # a registered version

A model version is looked up in the ModelVersions table (``--models-table`` or
``TUNELOOP_MODEL_VERSIONS_TABLE``) for its ``model_data_url``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from tuneloop.benchmarks.store import LATEST, BenchmarkNotFoundError, BenchmarkStore
from tuneloop.evaluation.errors import EvaluationInputError

TABLE_ENV = "TUNELOOP_BENCHMARKS_TABLE"
BUCKET_ENV = "TUNELOOP_ARTIFACTS_BUCKET"
MODELS_TABLE_ENV = "TUNELOOP_MODEL_VERSIONS_TABLE"


class CommandError(RuntimeError):
    """A usage problem reported as ``error: ...`` with exit code 2."""


def add_parser(commands: Any) -> None:
    """Register ``benchmarks`` and its subcommands on the top-level subparsers."""
    parser = commands.add_parser(
        "benchmarks",
        help="create, list, show and run custom benchmarks (immutable, content-hashed versions)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="benchmarks_command", required=True)

    def with_location(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--table", help=f"Benchmarks table name (default: ${TABLE_ENV})")
        p.add_argument("--bucket", help=f"artifacts bucket name (default: ${BUCKET_ENV})")
        p.add_argument("--stage", help="find the table and bucket from this stage's stack outputs")
        return p

    create = with_location(sub.add_parser("create", help="validate and store a JSONL file"))
    create.add_argument("name", help="benchmark name (letters, digits, '_' or '-')")
    create.add_argument("file", type=Path, help="the benchmark JSONL file")
    create.set_defaults(func=_create)

    listing = with_location(sub.add_parser("list", help="every benchmark and its latest version"))
    listing.set_defaults(func=_list)

    show = with_location(sub.add_parser("show", help="the versions of one benchmark"))
    show.add_argument("name")
    show.set_defaults(func=_show)

    run = with_location(sub.add_parser("run", help="score one model on a benchmark, locally"))
    run.add_argument("name")
    run.add_argument(
        "--model",
        required=True,
        help="a registered model version, a model folder, a model.tar.gz, or its s3:// URI",
    )
    run.add_argument(
        "--models-table", help=f"ModelVersions table name (default: ${MODELS_TABLE_ENV})"
    )
    run.add_argument("--version", default=LATEST, help="'latest' (default) or a version prefix")
    run.add_argument("--batch-size", type=int, default=8)
    run.set_defaults(func=_run)


def run_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run a parsed ``benchmarks`` command; user errors print one line, not a trace."""
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    try:
        return func(args, out or sys.stdout)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (EvaluationInputError, BenchmarkNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def store_from(args: argparse.Namespace) -> BenchmarkStore:
    table = args.table or os.environ.get(TABLE_ENV)
    bucket = args.bucket or os.environ.get(BUCKET_ENV)
    stage = getattr(args, "stage", None)
    if stage and not (table and bucket):
        # Same names as `tuneloop models` etc.: the stage's stack outputs.
        from tuneloop.operations.names import NamesError, PlatformNames

        try:
            names = PlatformNames.for_stage(stage)
        except NamesError as exc:
            raise CommandError(str(exc)) from exc
        table, bucket = table or names.benchmarks_table, bucket or names.artifacts_bucket
    missing = [
        f"--{flag} or ${env}"
        for flag, env, value in (("table", TABLE_ENV, table), ("bucket", BUCKET_ENV, bucket))
        if not value
    ]
    if missing:
        raise CommandError(f"say where benchmarks live: {' and '.join(missing)}")
    return BenchmarkStore(table=str(table), bucket=str(bucket))


def _create(args: argparse.Namespace, out: TextIO) -> int:
    version, created = store_from(args).create(args.name, args.file)
    state = "created" if created else "unchanged (this content is already stored)"
    print(f"{version.name} {version.version} {state}", file=out)
    print(f"  {version.item_count} {version.kind} items, {version.s3_uri}", file=out)
    return 0


def _list(args: argparse.Namespace, out: TextIO) -> int:
    latest = store_from(args).latest_by_name()
    if not latest:
        print("no benchmarks stored", file=out)
        return 0
    print(f"{'name':<24} {'latest':<14} {'items':>6} {'versions':>8}  created", file=out)
    for name, (version, count) in latest.items():
        print(
            f"{name:<24} {version.version[:12]:<14} {version.item_count:>6} {count:>8}  "
            f"{version.created_at}",
            file=out,
        )
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    versions = store_from(args).versions(args.name)
    if not versions:
        raise BenchmarkNotFoundError(f"benchmark {args.name!r}: no versions stored")
    print(f"{args.name}: {len(versions)} version(s), newest first", file=out)
    for index, version in enumerate(versions):
        marker = " (latest)" if index == 0 else ""
        tags = ", ".join(f"{tag} ({n})" for tag, n in version.tags.items()) or "none"
        print(f"  {version.version}{marker}", file=out)
        print(
            f"    {version.item_count} {version.kind} items, created {version.created_at}",
            file=out,
        )
        print(f"    tags: {tags}", file=out)
        print(f"    {version.s3_uri} (sha256 {version.sha256[:12]})", file=out)
    return 0


def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    store = store_from(args)
    version = store.resolve(args.name, args.version)
    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-run-") as tmp:
        workdir = Path(tmp)
        path = workdir / f"{args.name}.jsonl"
        path.write_bytes(store.read(version))
        from tuneloop.evaluation.custom import load_benchmark_file

        benchmark = load_benchmark_file(path)
        model_dir = resolve_model(args.model, workdir, models_table_from(args))
        print(f"scoring {args.model} on {args.name} {version.version[:12]}", file=out)
        results = score(model_dir, benchmark, args.batch_size)
    result = results[args.name]
    print(f"{args.name} ({version.version[:12]}, {result['n_items']} items)", file=out)
    for metric in ("acc", "acc_norm"):
        if metric in result:
            print(f"  {metric}: {result[metric]:.4f}", file=out)
    print(f"  acc_stderr: {result['acc_stderr']:.4f}", file=out)
    by_tag: dict[str, list[float]] = {}
    for item in result["items"]:
        for tag in item.get("tags") or []:
            by_tag.setdefault(tag, []).append(float(item["score"]))
    for tag, values in sorted(by_tag.items()):
        print(f"  tag {tag}: acc {sum(values) / len(values):.4f} (n={len(values)})", file=out)
    return 0


def models_table_from(args: argparse.Namespace) -> str:
    return str(getattr(args, "models_table", None) or os.environ.get(MODELS_TABLE_ENV, ""))


def registered_model_data(model_version: str, models_table: str) -> str:
    """The ``s3://`` URI of a registered version's model archive."""
    from tuneloop.release.model_versions import get_version

    item = get_version(models_table, model_version)
    if item is None:
        raise CommandError(f"--model {model_version!r}: no such model version in {models_table}")
    uri = item.get("model_data_url")
    if not uri:
        raise CommandError(
            f"--model {model_version!r} is {item.get('status', 'unknown')} and has no model "
            "archive (only registered versions have one)"
        )
    return str(uri)


def resolve_model(reference: str, workdir: Path, models_table: str = "") -> Path:
    """A model folder from a registered version, a folder, a ``model.tar.gz`` or its
    ``s3://`` URI. A local path wins over a version of the same name."""
    from tuneloop.evaluation.job import extract_model

    if not reference.startswith("s3://") and not Path(reference).exists() and models_table:
        reference = registered_model_data(reference, models_table)
    if reference.startswith("s3://"):
        bucket, _, key = reference[len("s3://") :].partition("/")
        if not bucket or not key:
            raise CommandError(f"--model {reference!r}: expected s3://bucket/key")
        from tuneloop import aws

        archive = workdir / "model.tar.gz"
        aws.s3().download_file(bucket, key, str(archive))
        return extract_model(archive, workdir / "model")
    path = Path(reference)
    if path.is_dir():
        return path
    if path.is_file():
        return extract_model(path, workdir / "model")
    hint = "" if models_table else f" (set ${MODELS_TABLE_ENV} to name a model version)"
    raise CommandError(f"--model {reference!r}: no such folder or file{hint}")


def score(model_dir: Path, benchmark: Any, batch_size: int) -> dict[str, dict[str, Any]]:
    import torch

    from tuneloop.evaluation.runner import evaluate_model
    from tuneloop.models.loading import load_model_dir

    torch.manual_seed(0)
    model, tokenizer = load_model_dir(model_dir)
    return evaluate_model(
        model,
        tokenizer,
        [benchmark],
        batch_size=batch_size,
        label="model",
        log=lambda line: print(line, file=sys.stderr, flush=True),  # progress, not results
    )
