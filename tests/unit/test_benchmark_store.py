"""The benchmark store and the ``tuneloop benchmarks`` CLI, against moto."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from tuneloop import aws
from tuneloop.benchmarks.store import BenchmarkNotFoundError, BenchmarkStore, check_version_spec
from tuneloop.cli import build_parser, main
from tuneloop.evaluation.errors import BenchmarkError

TABLE, BUCKET = "Benchmarks", "artifacts"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def mc(item_id: str, answer: int = 0, tags: list[str] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "prompt": f"Question {item_id}?",
        "choices": ["yes", "no"],
        "answer": answer,
    }
    if tags is not None:
        item["tags"] = tags
    return item


def write(path: Path, items: list[dict[str, Any]], **dumps: Any) -> Path:
    path.write_text("".join(json.dumps(i, **dumps) + "\n" for i in items), encoding="utf-8")
    return path


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[BenchmarkStore]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset()
    with mock_aws():
        aws.s3().create_bucket(Bucket=BUCKET)
        aws.dynamodb().create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "name", "KeyType": "HASH"},
                {"AttributeName": "version", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "name", "AttributeType": "S"},
                {"AttributeName": "version", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield BenchmarkStore(table=TABLE, bucket=BUCKET)
    aws.reset()


def tiny_model_and_archive(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny model as a folder and as the ``model.tar.gz`` a training job writes."""
    import tarfile

    from tests.unit.tiny_models import make_tiny_causal_lm

    model = make_tiny_causal_lm(tmp_path / "model")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in model.iterdir():
            tar.add(path, arcname=path.name)
    return model, archive


@pytest.fixture
def cli_store(store: BenchmarkStore, monkeypatch: pytest.MonkeyPatch) -> BenchmarkStore:
    """The store, named to the CLI through its environment variables."""
    monkeypatch.setenv("TUNELOOP_BENCHMARKS_TABLE", TABLE)
    monkeypatch.setenv("TUNELOOP_ARTIFACTS_BUCKET", BUCKET)
    return store


def objects() -> list[str]:
    return [o["Key"] for o in aws.s3().list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_create_stores_file_and_metadata(store: BenchmarkStore, tmp_path: Path) -> None:
    # Given a valid file with tagged items
    path = write(tmp_path / "faq.jsonl", [mc("a", tags=["billing"]), mc("b", 1, ["billing", "x"])])

    # When it is created as benchmark "faq"
    version, created = store.create("faq", path, now=T0)

    # Then the bytes are stored under benchmarks/<name>/<version>.jsonl with the metadata
    assert created is True and len(version.version) == 64
    key = f"benchmarks/faq/{version.version}.jsonl"
    assert objects() == [key]
    assert aws.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read() == path.read_bytes()
    (stored,) = store.versions("faq")
    assert stored == version
    assert (stored.item_count, stored.kind) == (2, "multiple_choice")
    assert stored.tags == {"billing": 2, "x": 1}
    assert stored.created_at == T0.isoformat()
    assert stored.s3_uri == f"s3://{BUCKET}/{key}"


def test_same_content_twice_is_a_no_op(store: BenchmarkStore, tmp_path: Path) -> None:
    first, _ = store.create("faq", write(tmp_path / "a.jsonl", [mc("a"), mc("b")]), now=T0)
    # Re-formatted (spacing, key order, answer as text): the same normalized content
    reformatted = [
        {"answer": "yes", **{k: v for k, v in mc(i).items() if k != "answer"}} for i in "ab"
    ]
    again, created = store.create(
        "faq",
        write(tmp_path / "b.jsonl", reformatted, indent=None, separators=(", ", " : ")),
        now=T0 + timedelta(days=1),
    )
    assert created is False
    assert again == first  # the original created_at and bytes are kept
    assert len(store.versions("faq")) == 1 and len(objects()) == 1


def test_new_content_is_a_new_latest_version(store: BenchmarkStore, tmp_path: Path) -> None:
    old, _ = store.create("faq", write(tmp_path / "a.jsonl", [mc("a")]), now=T0)
    new, created = store.create(
        "faq", write(tmp_path / "b.jsonl", [mc("a", 1)]), now=T0 + timedelta(hours=1)
    )
    assert created is True and new.version != old.version
    assert [v.version for v in store.versions("faq")] == [new.version, old.version]
    assert store.resolve("faq").version == new.version
    assert store.resolve("faq", old.version[:10]).version == old.version
    assert store.latest_by_name() == {"faq": (new, 2)}


def test_invalid_file_is_rejected_before_anything_is_written(
    store: BenchmarkStore, tmp_path: Path
) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(mc("a")) + "\n" + json.dumps({**mc("b"), "answer": 7}) + "\n")
    with pytest.raises(BenchmarkError) as caught:
        store.create("faq", path)
    assert (caught.value.file, caught.value.line, caught.value.field) == (
        "broken.jsonl",
        2,
        "answer",
    )
    assert "broken.jsonl line 2, field 'answer'" in str(caught.value)
    assert objects() == [] and store.versions("faq") == []


@pytest.mark.parametrize("name", ["mmlu", "bad name", ""])
def test_reserved_or_malformed_names_are_rejected(
    store: BenchmarkStore, tmp_path: Path, name: str
) -> None:
    with pytest.raises(BenchmarkError):
        store.create(name, write(tmp_path / "a.jsonl", [mc("a")]))
    assert objects() == []


def test_resolve_errors_name_the_benchmark(store: BenchmarkStore, tmp_path: Path) -> None:
    with pytest.raises(BenchmarkNotFoundError, match="'nope': no versions"):
        store.resolve("nope")
    store.create("faq", write(tmp_path / "a.jsonl", [mc("a")]))
    with pytest.raises(BenchmarkNotFoundError, match="matches no version"):
        store.resolve("faq", "0" * 12)
    with pytest.raises(ValueError, match=r"'latest' or 8\.\.64"):
        check_version_spec("abc")


def test_cli_parses_every_subcommand() -> None:
    parser = build_parser()
    args = parser.parse_args(["benchmarks", "create", "faq", "f.jsonl", "--table", "T"])
    assert (args.benchmarks_command, args.name, args.file, args.table) == (
        "create",
        "faq",
        Path("f.jsonl"),
        "T",
    )
    args = parser.parse_args(["benchmarks", "run", "faq", "--model", "s3://b/m.tar.gz"])
    assert (args.model, args.version, args.batch_size) == ("s3://b/m.tar.gz", "latest", 8)
    assert parser.parse_args(["benchmarks", "show", "faq"]).name == "faq"
    assert parser.parse_args(["demo"]).command == "demo"
    with pytest.raises(SystemExit):
        parser.parse_args(["benchmarks", "run", "faq"])  # --model is required


def test_cli_without_a_location_says_which_settings_are_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TUNELOOP_BENCHMARKS_TABLE", raising=False)
    monkeypatch.delenv("TUNELOOP_ARTIFACTS_BUCKET", raising=False)
    assert main(["benchmarks", "list"]) == 2
    err = capsys.readouterr().err
    assert "--table or $TUNELOOP_BENCHMARKS_TABLE" in err
    assert "--bucket or $TUNELOOP_ARTIFACTS_BUCKET" in err


def test_cli_create_list_show_through_env_vars(
    cli_store: BenchmarkStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write(tmp_path / "faq.jsonl", [mc("a", tags=["billing"]), mc("b")])
    assert main(["benchmarks", "create", "faq", str(path)]) == 0
    assert main(["benchmarks", "create", "faq", str(path)]) == 0
    out = capsys.readouterr().out
    (version,) = cli_store.versions("faq")
    assert f"faq {version.version} created" in out and "unchanged" in out
    assert main(["benchmarks", "list"]) == 0
    (row,) = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert row[:4] == ["faq", version.version[:12], "2", "1"]
    assert main(["benchmarks", "show", "faq"]) == 0
    shown = capsys.readouterr().out
    assert "2 multiple_choice items" in shown and "tags: billing (1)" in shown
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    assert main(["benchmarks", "create", "faq", str(bad)]) == 1
    assert "bad.jsonl line 1" in capsys.readouterr().err
    assert main(["benchmarks", "show", "other"]) == 1


def test_cli_run_scores_a_model_folder_and_a_tarball(
    cli_store: BenchmarkStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a stored benchmark (two tags) and a tiny model, as a folder and as model.tar.gz
    items = [mc(f"q{i}", i % 2, ["even" if i % 2 == 0 else "odd"]) for i in range(4)]
    version, _ = cli_store.create("faq", write(tmp_path / "faq.jsonl", items))
    model, archive = tiny_model_and_archive(tmp_path)

    outputs = []
    for reference in (str(model), str(archive)):
        # When the model is scored on the stored benchmark
        assert main(["benchmarks", "run", "faq", "--model", reference, "--batch-size", "2"]) == 0
        outputs.append(capsys.readouterr().out)

    # Then both print the same scores, per metric and per tag, for that version
    assert outputs[0].splitlines()[1:] == outputs[1].splitlines()[1:]
    out = outputs[0]
    assert f"faq ({version.version[:12]}, 4 items)" in out
    acc = float(re.search(r"  acc: ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    assert acc in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert "tag even: acc" in out and "(n=2)" in out
    assert main(["benchmarks", "run", "faq", "--model", str(tmp_path / "none")]) == 2


def test_cli_run_scores_a_registered_model_version(
    cli_store: BenchmarkStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a stored benchmark, a registered version whose archive is in S3, and a version
    # that never got one (rejected by the gate)
    monkeypatch.setenv("TUNELOOP_MODEL_VERSIONS_TABLE", "versions")
    cli_store.create("faq", write(tmp_path / "faq.jsonl", [mc(f"q{i}", i % 2) for i in range(4)]))
    _, archive = tiny_model_and_archive(tmp_path)
    aws.s3().upload_file(str(archive), BUCKET, "models/mv-1/output/model.tar.gz")
    aws.dynamodb().create_table(
        TableName="versions",
        KeySchema=[{"AttributeName": "model_version", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "model_version", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    versions = aws.table("versions")
    versions.put_item(
        Item={
            "model_version": "mv-1",
            "status": "registered",
            "model_data_url": f"s3://{BUCKET}/models/mv-1/output/model.tar.gz",
        }
    )
    versions.put_item(Item={"model_version": "mv-2", "status": "rejected"})

    # When each is named by its version
    scored = main(["benchmarks", "run", "faq", "--model", "mv-1", "--batch-size", "2"])
    scored_out = capsys.readouterr().out
    rejected = main(["benchmarks", "run", "faq", "--model", "mv-2"])
    rejected_err = capsys.readouterr().err
    unknown = main(["benchmarks", "run", "faq", "--model", "mv-9"])
    unknown_err = capsys.readouterr().err

    # Then the registered one is scored from its archive; the others say why they cannot be
    assert scored == 0
    assert "scoring mv-1 on faq" in scored_out and "  acc: " in scored_out
    assert rejected == 2 and "'mv-2' is rejected and has no model archive" in rejected_err
    assert unknown == 2 and "'mv-9': no such model version in versions" in unknown_err
