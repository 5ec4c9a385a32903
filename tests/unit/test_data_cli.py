"""The ``tuneloop data push|drops|show`` CLI, against moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from tests.integration.aws_fixtures import drops_table
from tuneloop import aws
from tuneloop.cli import build_parser, main
from tuneloop.data_cli import push as push_module

BUCKET, TABLE = "raw", "Drops"


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "TUNELOOP_RAW_BUCKET": BUCKET,
        "TUNELOOP_DROPS_TABLE": TABLE,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset()
    with mock_aws():
        aws.s3().create_bucket(Bucket=BUCKET)
        aws.dynamodb().create_table(**drops_table(TABLE))
        yield
    aws.reset()


def drop_folder(root: Path) -> Path:
    (root / "nested").mkdir(parents=True)
    (root / "a.jsonl").write_text('{"text": "first record"}\n', encoding="utf-8")
    (root / "nested" / "b.csv").write_text("text\nsecond record\n", encoding="utf-8")
    (root / ".DS_Store").write_bytes(b"\x00")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n", encoding="utf-8")
    return root


def objects() -> dict[str, Any]:
    listed = aws.s3().list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"]: item for item in listed}


def test_push_folder_uploads_every_visible_file_under_one_push(
    platform: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "push", str(drop_folder(tmp_path / "drop")), "--dataset", "support"]) == 0
    printed = capsys.readouterr().out.split()
    stored = objects()
    assert sorted(printed) == sorted(f"s3://{BUCKET}/{key}" for key in stored)
    (prefix,) = {key.rsplit("/", 1)[0] for key in stored if key.endswith("a.jsonl")}
    assert prefix.startswith("drops/support/")
    assert sorted(stored) == [f"{prefix}/a.jsonl", f"{prefix}/nested/b.csv"]
    body = aws.s3().get_object(Bucket=BUCKET, Key=f"{prefix}/nested/b.csv")["Body"].read()
    assert body == b"text\nsecond record\n"


def test_manifest_is_written_before_the_data_files(
    platform: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads: list[str] = []
    s3 = aws.s3()
    put = s3.put_object  # the transfer manager sends small files with it too

    def recording_put(**kwargs: Any) -> Any:
        uploads.append(kwargs["Key"])
        return put(**kwargs)

    monkeypatch.setattr(s3, "put_object", recording_put)
    argv = ["data", "push", str(drop_folder(tmp_path / "drop")), "--dataset", "support"]
    argv += ["--source", "zendesk", "--tag", "eu", "--tag", "vip", "--map", "text=body"]
    assert main(argv) == 0

    assert uploads[0].endswith("/_manifest.json") and len(uploads) == 3
    manifest = json.loads(aws.s3().get_object(Bucket=BUCKET, Key=uploads[0])["Body"].read())
    assert manifest == {
        "dataset": "support",
        "source": "zendesk",
        "field_mapping": {"text": "body"},
        "tags": ["eu", "vip"],
    }
    assert {key.rsplit("/", 1)[0] for key in uploads[:2]} == {uploads[0].rsplit("/", 1)[0]}


def test_no_manifest_without_source_tags_or_mapping(platform: None, tmp_path: Path) -> None:
    file = tmp_path / "one.jsonl"
    file.write_text('{"text": "x y z"}\n', encoding="utf-8")
    assert main(["data", "push", str(file)]) == 0
    (key,) = objects()
    assert key.startswith("drops/default/") and key.endswith("/one.jsonl")


def test_unsupported_files_are_listed_and_nothing_is_uploaded(
    platform: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = drop_folder(tmp_path / "drop")
    (folder / "report.pdf").write_bytes(b"%PDF")
    (folder / "nested" / "notes.docx").write_bytes(b"PK")
    assert main(["data", "push", str(folder), "--tag", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2 file(s)")
    assert "report.pdf" in err and "nested/notes.docx" in err and ".DS_Store" not in err
    assert objects() == {}


def test_bad_map_and_dataset_are_user_errors(
    platform: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "one.jsonl"
    file.write_text('{"text": "x"}\n', encoding="utf-8")
    assert main(["data", "push", str(file), "--map", "text"]) == 1
    assert "--map 'text': expected canonical=source" in capsys.readouterr().err
    assert main(["data", "push", str(file), "--dataset", "a/b"]) == 1
    assert "--dataset 'a/b'" in capsys.readouterr().err
    assert objects() == {}


def test_the_manifest_is_checked_by_the_ingestion_reader_before_upload(
    platform: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = drop_folder(tmp_path / "drop")
    assert main(["data", "push", str(folder), "--map", "body=text"]) == 1
    assert "field 'field_mapping.body': unknown canonical field" in capsys.readouterr().err
    (folder / "_manifest.json").write_text('{"source": "crm"}', encoding="utf-8")
    assert main(["data", "push", str(folder), "--tag", "eu"]) == 1
    assert "put the settings in one place" in capsys.readouterr().err
    (folder / "nested" / "b.csv.manifest.json").write_text('{"tags": "x"}', encoding="utf-8")
    assert main(["data", "push", str(folder)]) == 1
    assert "field 'tags': must be a list of strings" in capsys.readouterr().err
    assert objects() == {}


def test_manifests_inside_the_folder_go_up_before_the_data(
    platform: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = drop_folder(tmp_path / "drop")
    (folder / "nested" / "b.csv.manifest.json").write_text('{"tags": ["x"]}', encoding="utf-8")
    (folder / "z").mkdir()
    (folder / "z" / "_manifest.json").write_text('{"source": "crm"}', encoding="utf-8")
    uploads: list[str] = []
    s3 = aws.s3()
    put = s3.put_object

    def recording_put(**kwargs: Any) -> Any:
        uploads.append(kwargs["Key"].split("/", 3)[3])
        return put(**kwargs)

    monkeypatch.setattr(s3, "put_object", recording_put)
    assert main(["data", "push", str(folder)]) == 0
    assert uploads == ["nested/b.csv.manifest.json", "z/_manifest.json", "a.jsonl", "nested/b.csv"]


def test_progress_reports_files_bytes_and_rate_on_request(
    platform: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = drop_folder(tmp_path / "drop")
    (folder / "a.jsonl").write_text('{"text": "some words"}\n' * 20_000, encoding="utf-8")
    assert main(["data", "push", str(folder), "--progress"]) == 0
    lines = capsys.readouterr().err.splitlines()
    progress = [line for line in lines if line.startswith("pushed ") and "MB/s" in line]
    assert progress[-1].startswith("pushed 2/2 files, 0.5/0.5 MB, ")
    assert any(line.startswith("pushed 1/2 files, 0.5/0.5 MB, ") for line in progress)

    assert main(["data", "push", str(folder)]) == 0  # not a TTY and no --progress
    assert not any("MB/s" in line for line in capsys.readouterr().err.splitlines())


def test_big_files_go_up_in_parts(
    platform: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push_module, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(push_module, "PART_SIZE", 5 * 1024 * 1024)
    big = tmp_path / "big.jsonl"
    line = json.dumps({"text": "a record long enough " * 20}) + "\n"
    big.write_text(line * (6 * 1024 * 1024 // len(line) + 1), encoding="utf-8")
    assert main(["data", "push", str(big)]) == 0
    ((_key, item),) = objects().items()
    assert item["Size"] == big.stat().st_size
    assert item["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts


def test_missing_bucket_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TUNELOOP_RAW_BUCKET", raising=False)
    monkeypatch.delenv("TUNELOOP_DROPS_TABLE", raising=False)
    assert main(["data", "push", str(tmp_path)]) == 2
    assert "--bucket or $TUNELOOP_RAW_BUCKET" in capsys.readouterr().err
    assert main(["data", "drops"]) == 2
    assert "--table or $TUNELOOP_DROPS_TABLE" in capsys.readouterr().err


def manifest_item(drop_id: str, started: str, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "drop_id": drop_id,
        "bucket": BUCKET,
        "key": f"drops/{fields.pop('dataset', 'default')}/{drop_id[:6]}/f.jsonl",
        "dataset": "default",
        "status": "complete",
        "started_at": started,
        "received": 10,
        "stored": 6,
        "duplicate": 1,
        "near_duplicate": 1,
        "quarantined": 2,
    }
    item["dataset"] = item["key"].split("/")[1]
    if "segment_of" not in fields:  # as tuneloop/ingest/drops.py writes it: drops only
        item["started_month"] = started[:7]
    item.update(fields)
    aws.table(TABLE).put_item(Item=item)
    return item


def test_drops_lists_manifests_newest_first_without_segments(
    platform: None, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest_item("a" * 64, "2026-01-01T10:00:00+00:00")
    manifest_item("b" * 64, "2026-01-03T10:00:00+00:00", dataset="support")
    manifest_item("c" * 64, "2026-01-02T10:00:00+00:00", status="processing", received=None)
    manifest_item("d" * 64, "2026-01-04T10:00:00+00:00", segment_of="a" * 64)

    assert main(["data", "drops"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [row[1] for row in rows] == ["b" * 12, "c" * 12, "a" * 12]
    assert rows[0][2:8] == ["complete", "10", "6", "1", "1", "2"]
    assert rows[1][2:4] == ["processing", "-"]

    assert main(["data", "drops", "--dataset", "support"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["data", "drops", "--limit", "1"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]] == ["b" * 12]


def test_show_prints_counts_reasons_redactions_and_a_quarantine_sample(
    platform: None, capsys: pytest.CaptureFixture[str]
) -> None:
    drop_id = "3f2a9c1e" + "0" * 56
    lines = [
        {
            "file": "drops/default/x/f.jsonl",
            "line": n,
            "reason": "too_short",
            "field": "text",
            "message": f"drops/default/x/f.jsonl, line {n}, field 'text': too short",
            "raw": f'{{"text": "<EMAIL> {n}"}}',
        }
        for n in range(1, 8)
    ]
    key = f"quarantine/{drop_id}/f.jsonl.jsonl"
    aws.s3().put_object(
        Bucket=BUCKET, Key=key, Body="".join(json.dumps(x) + "\n" for x in lines).encode()
    )
    item = manifest_item(
        drop_id,
        "2026-01-01T10:00:00+00:00",
        reasons={"too_short": 5, "invalid_json": 2},
        redactions={"email": 3, "phone": 1},
        quarantine_uri=f"s3://{BUCKET}/{key}",
    )

    assert main(["data", "show", drop_id[:8]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"drop {drop_id}\n")
    assert "received 10, stored 6, duplicate 1, near_duplicate 1, quarantined 2" in out
    reasons = out.split("reasons\n")[1].split("redactions")[0].split()
    assert reasons == ["too_short", "5", "invalid_json", "2"]
    assert out.split("redactions\n")[1].split()[:4] == ["email", "3", "phone", "1"]
    assert "quarantined lines (first 5 of" in out
    assert "line 5, field 'text'" in out and "line 6," not in out
    assert '{"text": "<EMAIL> 1"}' in out

    assert main(["data", "show", f"s3://{BUCKET}/{item['key']}", "--sample", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"drop {drop_id}\n") and "(first 2 of" in out


def test_show_errors_for_short_unknown_and_ambiguous_prefixes(
    platform: None, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest_item("abcdef01" + "1" * 56, "2026-01-01T10:00:00+00:00")
    manifest_item("abcdef01" + "2" * 56, "2026-01-01T11:00:00+00:00")

    assert main(["data", "show", "abcdef0"]) == 1
    assert "too short: give at least 8" in capsys.readouterr().err
    assert main(["data", "show", "abcdef01"]) == 1
    assert "ambiguous: 2 drops match" in capsys.readouterr().err
    assert main(["data", "show", "abcdef012"]) == 0
    assert capsys.readouterr().out.startswith("drop abcdef012")
    assert main(["data", "show", "99999999"]) == 1
    assert "no drop id starts with '99999999'" in capsys.readouterr().err
    assert main(["data", "show", "drops/default/nothing.jsonl"]) == 1
    assert "no drop for drops/default/nothing.jsonl" in capsys.readouterr().err
    assert main(["data", "show", "not-an-id"]) == 1
    assert "neither a drop id" in capsys.readouterr().err


def test_parser_knows_every_data_subcommand() -> None:
    parser = build_parser()
    args = parser.parse_args(["data", "push", "x", "--tag", "a", "--tag", "b", "--map", "t=u"])
    assert (args.data_command, args.tag, args.map, args.dataset) == (
        "push",
        ["a", "b"],
        ["t=u"],
        "default",
    )
    assert parser.parse_args(["data", "drops", "--limit", "3"]).limit == 3
    assert parser.parse_args(["data", "show", "abc"]).sample == 5
