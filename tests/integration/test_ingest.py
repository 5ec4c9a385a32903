"""Ingest handler against moto: store, dedup, quarantine, manifest, idempotency, batches."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from lambdas.ingest.handler import handler
from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    lambda_context,
    platform,
    use_handler_env,
)
from tests.integration.ingest_events import object_created, put_drop, sqs_batch
from tests.integration.test_handler_powertools import log_lines
from tuneloop import aws
from tuneloop.ingest.drops import DropsTable
from tuneloop.ingest.events import DropObject

__all__ = ["aws_credentials", "platform"]  # fixtures used by name

GOOD_AND_BAD = (
    b'{"text": "How do I reset my password?"}\n'
    b'{"messages": [{"role": "user", "content": "Hi"}, '
    b'{"role": "assistant", "content": "Hello"}]}\n'
    b'{"text": "How  do I reset my password? "}\n'
    b'{"text": 5}\n'
    b"{oops\n"
)


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "ingest")
    monkeypatch.setenv("RETRAIN_THRESHOLD", "100")
    return platform


def drop(platform: Platform, key: str, body: bytes) -> str:
    return object_created(platform.raw_bucket, put_drop(platform.raw_bucket, key, body))


def invoke(*bodies: str) -> dict[str, Any]:
    return handler(sqs_batch(*bodies), lambda_context())


def table_items(name: str) -> list[dict[str, Any]]:
    return aws.table(name).scan()["Items"]


def drop_item(platform: Platform, key: str, event_body: str) -> dict[str, Any]:
    etag = json.loads(event_body)["detail"]["object"]["etag"]
    drop_id = DropObject(platform.raw_bucket, key, etag, 0).drop_id
    table = aws.table(platform.drops_table)
    return table.get_item(Key={"drop_id": drop_id})["Item"]


def pending_records(platform: Platform) -> int:
    table = aws.table(platform.control_table)
    item: dict[str, Any] = table.get_item(Key={"key": "retrain"}).get("Item") or {}
    return int(item.get("pending_records", 0))


def day_counter(platform: Platform) -> dict[str, int]:
    """Today's ingest counter (the dashboard's records per day)."""
    from tuneloop.ingest.drops import day_counter_key

    key = day_counter_key(datetime.now(UTC).date().isoformat())
    item = aws.table(platform.control_table).get_item(Key={"key": key}).get("Item") or {}
    return {name: int(str(value)) for name, value in item.items() if name != "key"}


def test_a_drop_is_stored_deduplicated_quarantined_and_reconciled(env: Platform) -> None:
    # Given a JSONL drop with 2 new records, 1 duplicate and 2 bad lines
    key = "drops/support/tickets.jsonl"
    body = drop(env, key, GOOD_AND_BAD)

    # When the ingest Lambda receives its event
    response = invoke(body)

    # Then nothing failed, the records are stored with their lineage ...
    assert response == {"batchItemFailures": []}
    records = table_items(env.records_table)
    assert sorted(int(r["line"]) for r in records) == [1, 2]
    text = next(r for r in records if "text" in r)
    assert text["text"] == "How do I reset my password?"
    assert (text["dataset"], text["source_key"]) == ("support", key)
    chat = next(r for r in records if "messages" in r)
    assert json.loads(chat["messages"])[1] == {"role": "assistant", "content": "Hello"}

    # ... the manifest reconciles ...
    manifest = drop_item(env, key, body)
    assert manifest["status"] == "complete"
    assert (manifest["received"], manifest["stored"]) == (5, 2)
    assert (manifest["duplicate"], manifest["quarantined"]) == (1, 2)
    assert manifest["reasons"] == {"invalid_field": 1, "invalid_json": 1}

    # ... the bad lines are quarantined with file, line, reason, field and raw text ...
    s3 = aws.client("s3")
    quarantine_key = f"quarantine/{manifest['drop_id']}/tickets.jsonl.jsonl"
    assert manifest["quarantine_uri"] == f"s3://{env.raw_bucket}/{quarantine_key}"
    lines = s3.get_object(Bucket=env.raw_bucket, Key=quarantine_key)["Body"].read().splitlines()
    rejected = [json.loads(line) for line in lines]
    assert [(r["file"], r["line"], r["reason"], r["field"]) for r in rejected] == [
        (key, 4, "invalid_field", "text"),
        (key, 5, "invalid_json", None),
    ]
    assert rejected[1]["raw"] == "{oops"
    assert rejected[0]["message"].startswith(f"{key}, line 4, field 'text'")

    # ... the retrain counter grew by the stored count, today's counter by every count ...
    assert pending_records(env) == 2
    assert day_counter(env) == {
        "received": 5, "stored": 2, "duplicate": 1, "near_duplicate": 0, "quarantined": 2
    }  # fmt: skip
    # ... and the manifest is on the newest-drops index
    assert manifest["started_month"] == manifest["started_at"][:7]


def test_a_redelivered_event_changes_nothing(env: Platform) -> None:
    body = drop(env, "drops/default/a.jsonl", GOOD_AND_BAD)
    invoke(body)
    first = drop_item(env, "drops/default/a.jsonl", body)

    # The same event twice in one batch, and again in a later batch
    assert invoke(body, body) == {"batchItemFailures": []}

    again = drop_item(env, "drops/default/a.jsonl", body)
    assert {k: again[k] for k in ("received", "stored", "duplicate", "quarantined")} == {
        k: first[k] for k in ("received", "stored", "duplicate", "quarantined")
    }
    assert again["completed_at"] == first["completed_at"]
    assert len(table_items(env.records_table)) == 2
    assert pending_records(env) == 2
    assert day_counter(env)["received"] == 5  # counted once


def test_a_drop_interrupted_midway_is_resumed_without_double_counting(env: Platform) -> None:
    # Given a first delivery that stored line 1 and crashed before completing the drop
    key = "drops/default/resume.jsonl"
    body = drop(env, key, b'{"text": "one"}\n{"text": "two"}\n')
    etag = json.loads(body)["detail"]["object"]["etag"]
    obj = DropObject(env.raw_bucket, key, etag, 0)
    aws.table(env.drops_table).put_item(
        Item={"drop_id": obj.drop_id, "key": key, "status": "processing"}
    )
    aws.table(env.records_table).put_item(
        Item={
            "record_id": hashlib.sha256(b"one").hexdigest(),
            "drop_id": obj.drop_id,
            "line": 1,
            "text": "one",
            "dataset": "default",
            "source_key": key,
            "ingested_at": "2026-01-01T00:00:00+00:00",
        }
    )

    # When the event is delivered again
    invoke(body)

    # Then line 1 counts as stored (not as a duplicate of itself) and is added once
    assert len(table_items(env.records_table)) == 2
    manifest = drop_item(env, key, body)
    assert (manifest["received"], manifest["stored"], manifest["duplicate"]) == (2, 2, 0)
    assert pending_records(env) == 2


def test_records_seen_in_an_earlier_drop_are_duplicates(env: Platform) -> None:
    invoke(drop(env, "drops/default/first.txt", b"alpha\n\nbeta\n"))
    body = drop(env, "drops/default/second.csv", b"text\nbeta\ngamma\n")

    invoke(body)

    manifest = drop_item(env, "drops/default/second.csv", body)
    assert (manifest["received"], manifest["stored"], manifest["duplicate"]) == (2, 1, 1)
    assert len(table_items(env.records_table)) == 3
    assert pending_records(env) == 3


def test_large_drops_are_written_in_several_transactions(env: Platform) -> None:
    # 250 records (3 transactions), 40 of them already stored by an earlier drop
    invoke(
        drop(
            env,
            "drops/default/old.jsonl",
            b"".join(json.dumps({"text": f"record {i}"}).encode() + b"\n" for i in range(40)),
        )
    )
    lines = [json.dumps({"text": f"record {i}"}) for i in range(250)]
    body = drop(env, "drops/default/big.jsonl", "\n".join(lines).encode())

    invoke(body)

    manifest = drop_item(env, "drops/default/big.jsonl", body)
    assert (manifest["received"], manifest["stored"], manifest["duplicate"]) == (250, 210, 40)
    assert len(table_items(env.records_table)) == 250


def test_an_unsupported_file_is_quarantined_whole(env: Platform) -> None:
    key = "drops/default/export.xlsx"
    body = drop(env, key, b"PK\x03\x04")

    invoke(body)

    manifest = drop_item(env, key, body)
    assert (manifest["received"], manifest["quarantined"]) == (1, 1)
    assert manifest["reasons"] == {"unsupported_format": 1}
    s3 = aws.client("s3")
    quarantined = s3.get_object(
        Bucket=env.raw_bucket, Key=f"quarantine/{manifest['drop_id']}/export.xlsx.jsonl"
    )["Body"].read()
    entry = json.loads(quarantined)
    assert (entry["file"], entry["reason"]) == (key, "unsupported_format")


def test_objects_outside_drops_are_not_ingested(env: Platform) -> None:
    # The quarantine files land in the raw bucket too: they must not loop back in.
    body = drop(env, "quarantine/abc/x.jsonl.jsonl", b'{"text": "x"}\n')
    assert invoke(body) == {"batchItemFailures": []}
    assert table_items(env.drops_table) == []
    assert table_items(env.records_table) == []


def test_only_the_failed_message_is_reported_for_retry(env: Platform) -> None:
    good = drop(env, "drops/default/ok.jsonl", b'{"text": "fine"}\n')
    response = invoke(good, '{"not": "an S3 event"}')
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-2"}]}
    assert len(table_items(env.records_table)) == 1


def test_reaching_the_threshold_starts_a_retrain_run(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_THRESHOLD", "2")

    # (texts of at least 3 characters: shorter ones are quarantined as too_short)
    invoke(drop(env, "drops/default/t.jsonl", b'{"text": "xyz"}\n{"text": "why"}\n'))

    sfn = aws.client("stepfunctions")
    (execution,) = sfn.list_executions(stateMachineArn=env.state_machine_arn)["executions"]
    started = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(started["input"]) == {"trigger": "threshold"}
    assert pending_records(env) == 0


def test_a_drop_completes_once_even_if_two_deliveries_race_to_finish(env: Platform) -> None:
    # Both deliveries passed the "already complete?" check; only one may finish the drop.
    drops = DropsTable(env.drops_table)
    obj = DropObject(env.raw_bucket, "drops/default/race.jsonl", "etag-1", 10)
    drops.start(obj.drop_id, obj)
    counts = {"received": 2, "stored": 2, "duplicate": 0, "quarantined": 0, "reasons": {}}

    first = drops.complete(obj.drop_id, counts, control_table=env.control_table, stored=2)
    second = drops.complete(obj.drop_id, counts, control_table=env.control_table, stored=2)

    assert (first, second) == (True, False)
    assert pending_records(env) == 2


LONG = (
    "Our support team answers every ticket within one business day and escalates outages "
    "to the on-call engineer, who posts updates on the status page every thirty minutes"
)


def test_near_duplicates_across_drops_name_the_stored_record_they_match(env: Platform) -> None:
    invoke(drop(env, "drops/support/first.jsonl", json.dumps({"text": LONG}).encode()))
    (original,) = table_items(env.records_table)
    later = b"\n".join(
        json.dumps({"text": text}).encode()
        for text in (LONG + " until it is resolved", "A different note about invoices and taxes.")
    )
    body = drop(env, "drops/support/second.jsonl", later)

    invoke(body)
    invoke(body)  # re-delivered: same counts, nothing new

    manifest = drop_item(env, "drops/support/second.jsonl", body)
    assert (manifest["received"], manifest["stored"], manifest["near_duplicate"]) == (2, 1, 1)
    (near,) = manifest["near_duplicates"]
    assert (near["line"], near["of"]) == (1, original["record_id"])
    assert near["similarity"] >= 0.8
    assert len(table_items(env.records_table)) == 2
    bands = [i for i in table_items(env.control_table) if i["key"].startswith("near_dup#")]
    assert bands and all(i["key"].startswith("near_dup#support#") for i in bands)


def test_personal_data_never_reaches_records_manifest_quarantine_or_logs(
    env: Platform, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    key = "drops/default/pii.jsonl"
    body = drop(
        env,
        key,
        b'{"text": "Reach Anna at anna@example.com or +44 20 7946 0958, she is in Leeds."}\n'
        b'{"text": "card 4111 1111 1111 1111" oops anna@example.com\n',
    )

    # The handler's Powertools Logger writes to the stdout of import time, which capsys
    # does not see: its lines are read from its own handler; the library's loggers via caplog.
    handler_logger = inspect.unwrap(handler).__globals__["logger"]
    with log_lines(handler_logger) as lines, caplog.at_level(logging.DEBUG):
        invoke(body)

    (record,) = table_items(env.records_table)
    assert record["text"] == "Reach Anna at <EMAIL> or <PHONE>, she is in Leeds."
    assert record["redactions"] == {"EMAIL": 1, "PHONE": 1}
    assert record["features"]["language"] == "en"
    assert record["features"]["tags"] == ["dataset:default", "format:jsonl", "shape:text"]
    assert int(record["features"]["tokens"]) > 0
    manifest = drop_item(env, key, body)
    assert manifest["redactions"] == {"EMAIL": 1, "PHONE": 1}
    quarantined = (
        aws.client("s3")
        .get_object(Bucket=env.raw_bucket, Key=f"quarantine/{manifest['drop_id']}/pii.jsonl.jsonl")[
            "Body"
        ]
        .read()
    )
    assert b"<CREDIT_CARD>" in quarantined and b"<EMAIL>" in quarantined
    assert any(line["message"] == "drop processed" for line in lines)  # the capture sees it
    logged = "\n".join([*map(json.dumps, lines), caplog.text, capsys.readouterr().out])
    for secret in ("anna@example.com", "7946 0958", "4111 1111"):
        assert secret.encode() not in quarantined and secret not in logged


def test_a_folder_manifest_maps_fields_and_tags_every_record(env: Platform) -> None:
    # Given a folder manifest uploaded first, then a CSV with its own column names
    manifest = {
        "dataset": "support",
        "source": "zendesk",
        "field_mapping": {"prompt": "Question", "completion": "Answer"},
        "tags": ["team:care"],
    }
    put_drop(env.raw_bucket, "drops/support/faq/_manifest.json", json.dumps(manifest).encode())
    key = "drops/support/faq/2024.csv"
    body = drop(env, key, b"Question,Answer\nHow do I log in?,Use your badge.\n")

    # When both events arrive (the manifest's is skipped: it is not data)
    manifest_event = object_created(
        env.raw_bucket, {"key": "drops/support/faq/_manifest.json", "etag": "m", "size": 1}
    )
    assert invoke(manifest_event, body) == {"batchItemFailures": []}

    # Then the record has the mapped content, the source and the manifest's tags
    (record,) = table_items(env.records_table)
    assert json.loads(record["messages"]) == [
        {"role": "user", "content": "How do I log in?"},
        {"role": "assistant", "content": "Use your badge."},
    ]
    assert record["source"] == "zendesk"
    assert record["features"]["tags"] == [
        "dataset:support",
        "format:csv",
        "source:zendesk",
        "team:care",
        "shape:chat",
    ]
    assert [item["key"] for item in table_items(env.drops_table)] == [key]


def test_a_sidecar_manifest_wins_over_the_folder_manifest(env: Platform) -> None:
    put_drop(env.raw_bucket, "drops/default/_manifest.json", b'{"source": "folder"}')
    put_drop(
        env.raw_bucket,
        "drops/default/export.dat.manifest.json",
        b'{"source": "sidecar", "format": "jsonl", "field_mapping": {"text": "body.text"}}',
    )
    invoke(drop(env, "drops/default/export.dat", b'{"body": {"text": "nested text"}}\n'))
    (record,) = table_items(env.records_table)
    assert (record["text"], record["source"]) == ("nested text", "sidecar")


@pytest.mark.parametrize(
    ("manifest", "reason", "field"),
    [
        (b'{"dataset": "billing"}', "dataset_mismatch", "dataset"),
        (b'{"tags": "not-a-list"}', "invalid_manifest", "tags"),
    ],
)
def test_an_invalid_manifest_quarantines_each_file_it_governs_whole(
    env: Platform, manifest: bytes, reason: str, field: str
) -> None:
    put_drop(env.raw_bucket, "drops/support/_manifest.json", manifest)
    key = "drops/support/a.jsonl"
    body = drop(env, key, b'{"text": "never read"}\n{"text": "nor this"}\n')

    assert invoke(body) == {"batchItemFailures": []}

    item = drop_item(env, key, body)
    assert (item["received"], item["quarantined"], item["reasons"]) == (1, 1, {reason: 1})
    assert table_items(env.records_table) == []
    quarantined = (
        aws.client("s3")
        .get_object(Bucket=env.raw_bucket, Key=f"quarantine/{item['drop_id']}/a.jsonl.jsonl")[
            "Body"
        ]
        .read()
    )
    entry = json.loads(quarantined)
    assert (entry["line"], entry["reason"], entry["field"]) == (0, reason, field)
    assert "drop manifest drops/support/_manifest.json" in entry["message"]


def test_log_parquet_and_gzip_drops_are_ingested_with_metadata(env: Platform) -> None:
    import gzip
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    log = b"2024-01-01T00:00:00Z ERROR billing.worker: payment failed for anna@example.com\n"
    invoke(drop(env, "drops/ops/app.log.gz", gzip.compress(log)))
    sink = io.BytesIO()
    rows = [{"text": f"parquet row number {n}"} for n in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), sink, row_group_size=2)
    invoke(drop(env, "drops/ops/rows.parquet", sink.getvalue()))

    records = table_items(env.records_table)
    (entry,) = [r for r in records if r["source_key"].endswith(".log.gz")]
    assert entry["text"] == "payment failed for <EMAIL>"
    assert entry["metadata"]["level"] == "ERROR"
    assert entry["metadata"]["logger"] == "billing.worker"
    assert "format:log" in entry["features"]["tags"]
    parquet = sorted(int(r["line"]) for r in records if r["source_key"].endswith(".parquet"))
    assert parquet == [1, 2, 3, 4, 5]


def test_records_are_accounted_for_in_chunks_with_whole_file_line_numbers(env: Platform) -> None:
    from tuneloop.ingest import IngestSettings, IngestTables, ingest_drop, parse_drop_event

    # Given a file of 7 records with a duplicate across chunks of 3 and a bad line
    lines = [json.dumps({"text": f"chunked record {n}"}) for n in range(5)]
    lines += [lines[0], "{bad"]
    body = drop(env, "drops/default/chunks.jsonl", "\n".join(lines).encode())

    tables = IngestTables(env.records_table, env.drops_table, env.control_table)
    result = ingest_drop(parse_drop_event(body), tables, IngestSettings(chunk_records=3))

    assert (result.received, result.stored, result.duplicate, result.quarantined) == (7, 5, 1, 1)
    assert sorted(int(r["line"]) for r in table_items(env.records_table)) == [1, 2, 3, 4, 5]


def test_a_large_drop_is_split_into_segments_that_complete_it_once(env: Platform) -> None:
    from tuneloop.ingest import IngestSettings, IngestTables, ingest_message

    # Given a CSV larger than the (tiny) segment size, with a quoted cell spanning lines,
    # a duplicate in a later segment and a bad row
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="ingest")["QueueUrl"]
    rows = [f"segmented record number {n},{n}" for n in range(30)]
    rows[4] = '"a quoted cell\nthat spans\nthree lines",4'
    rows[25] = rows[1]
    rows[27] = '1,2,3,"too many cells"'
    key = "drops/support/big.csv"
    body = drop(env, key, ("text,n\n" + "\n".join(rows) + "\n").encode())
    tables = IngestTables(env.records_table, env.drops_table, env.control_table)
    settings = IngestSettings(segment_bytes=200)

    # When the event is ingested, and then every segment message it queued
    first = ingest_message(body, tables, settings, queue_url=queue_url)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    results = [ingest_message(m["Body"], tables, settings) for m in messages]
    # (a segment delivered twice changes nothing)
    again = ingest_message(messages[0]["Body"], tables, settings)

    # Then the drop was split, and completed once with the summed, reconciled counts
    assert first.status == "segmented"
    assert len(messages) == len(results) > 2
    assert again.status == "already_complete"
    parent = drop_item(env, key, body)
    assert parent["status"] == "complete"
    assert int(parent["segments"]) == int(parent["segments_done"]) == len(messages)
    assert (parent["received"], parent["stored"]) == (30, 28)
    assert (parent["duplicate"], parent["quarantined"]) == (1, 1)
    assert parent["reasons"] == {"invalid_csv": 1}
    assert parent["quarantine_uri"] == f"s3://{env.raw_bucket}/quarantine/{parent['drop_id']}/"
    # ... line numbers are those of the whole file (the header is line 1) ...
    lines = sorted(int(r["line"]) for r in table_items(env.records_table))
    expected = [n + 2 if n <= 4 else n + 4 for n in range(30) if n not in (25, 27)]
    assert lines == expected
    # ... the segment items name their drop, and the retrain counter grew by the stored count
    segments = [i for i in table_items(env.drops_table) if "segment_of" in i]
    assert {i["segment_of"] for i in segments} == {parent["drop_id"]}
    assert not any("started_month" in i for i in segments)  # only drops are on the index
    assert pending_records(env) == 28
    assert (day_counter(env)["received"], day_counter(env)["stored"]) == (30, 28)  # once
    # ... and the whole-file event delivered again changes nothing
    assert ingest_message(body, tables, settings, queue_url=queue_url).status == "already_complete"
    assert sqs.receive_message(QueueUrl=queue_url).get("Messages", []) == []


def test_oversized_bodies_go_to_s3_and_drops_get_a_curated_copy(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneloop.datasets import training_line

    monkeypatch.setenv("CURATED_BUCKET", env.curated_bucket)
    # Given a record far over DynamoDB's 400 KB item limit (3 bytes per character) and a
    # small one
    large = "".join(chr(0x4E00 + (n * 7919) % 20000) for n in range(150_000))
    key = "drops/docs/manuals.jsonl"
    body = drop(
        env, key, (json.dumps({"text": large}) + "\n" + '{"text": "a short note"}\n').encode()
    )

    assert invoke(body) == {"batchItemFailures": []}

    # Then the large record's item points at its body in the curated bucket ...
    records = {len(r.get("text", "")): r for r in table_items(env.records_table)}
    oversized = records[0]
    assert "text" not in oversized and "messages" not in oversized
    uri = f"s3://{env.curated_bucket}/records/docs/{oversized['record_id']}.json"
    assert oversized["body_s3_uri"] == uri
    # ... which the dataset export reads back
    assert training_line(dict(oversized)) == {"text": large}
    assert training_line(dict(records[len("a short note")])) == {"text": "a short note"}
    # ... and the drop's stored records have a curated copy partitioned by dataset and drop
    manifest = drop_item(env, key, body)
    copy = (
        aws.client("s3")
        .get_object(
            Bucket=env.curated_bucket, Key=f"curated/docs/{manifest['drop_id']}/part-00000.jsonl"
        )["Body"]
        .read()
    )
    lines = [json.loads(line) for line in copy.splitlines()]
    assert [(line["line"], len(line["text"])) for line in lines] == [(1, len(large)), (2, 12)]
    assert all(line["source_key"] == key and "dataset:docs" in line["tags"] for line in lines)


def test_the_ingest_settings_environment_value_configures_the_pipeline(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneloop.ingest.settings import IngestSettingsError

    monkeypatch.setenv("INGEST_SETTINGS", '{"quality": {"min_chars": 12}, "redactors": []}')
    key = "drops/default/settings.jsonl"
    body = drop(env, key, b'{"text": "too short"}\n{"text": "mail me at a@example.com"}\n')

    assert invoke(body) == {"batchItemFailures": []}

    assert drop_item(env, key, body)["reasons"] == {"too_short": 1}
    (record,) = table_items(env.records_table)
    assert record["text"] == "mail me at a@example.com"  # no redactors configured

    monkeypatch.setenv("INGEST_SETTINGS", '{"quality": {"min_chars": -1}}')
    with pytest.raises(IngestSettingsError, match=r"quality\.min_chars must be >= 0"):
        invoke(body)


def test_the_handler_runs_one_segment_per_invocation_and_requeues_the_rest(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="ingest-handler")["QueueUrl"]
    monkeypatch.setenv("INGEST_QUEUE_URL", queue_url)
    monkeypatch.setenv("INGEST_SETTINGS", '{"segment_bytes": 150}')
    key = "drops/default/many.jsonl"
    lines = [json.dumps({"text": f"segment handler record {n}"}) for n in range(20)]
    body = drop(env, key, "\n".join(lines).encode())

    assert invoke(body) == {"batchItemFailures": []}
    segment_runs = 0
    for _ in range(50):  # each round: one batch of whatever is queued
        queued = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
        messages = queued.get("Messages", [])
        if not messages:
            break
        segment_runs += 1
        assert invoke(*[m["Body"] for m in messages]) == {"batchItemFailures": []}
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    parent = drop_item(env, key, body)
    assert parent["status"] == "complete"
    # One segment per batch: as many batches as segments, each of the others sent back.
    assert segment_runs == int(parent["segments"]) > 2
    assert (parent["received"], parent["stored"]) == (20, 20)
    assert pending_records(env) == 20


def test_a_large_parquet_drop_is_split_by_row_groups(env: Platform) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tuneloop.ingest import IngestSettings, IngestTables, ingest_message

    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="ingest-parquet")["QueueUrl"]
    sink = io.BytesIO()
    rows = [{"text": f"parquet segment row number {n}"} for n in range(12)]
    pq.write_table(pa.Table.from_pylist(rows), sink, row_group_size=3)
    key = "drops/default/rows.parquet"
    body = drop(env, key, sink.getvalue())
    tables = IngestTables(env.records_table, env.drops_table, env.control_table)
    settings = IngestSettings(segment_bytes=100)

    assert ingest_message(body, tables, settings, queue_url=queue_url).status == "segmented"
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    for message in messages:
        ingest_message(message["Body"], tables, settings)

    parent = drop_item(env, key, body)
    assert parent["status"] == "complete" and int(parent["segments"]) == len(messages) > 1
    assert (parent["received"], parent["stored"]) == (12, 12)
    assert sorted(int(r["line"]) for r in table_items(env.records_table)) == list(range(1, 13))


def test_the_write_concurrency_setting_reaches_the_record_store(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneloop.ingest import IngestSettings, IngestTables, ingest_message
    from tuneloop.ingest.store import DynamoRecordStore

    # Given settings that allow 3 transactions in flight, and a store that notes its setting
    seen: list[int] = []
    insert_new = DynamoRecordStore.insert_new

    def noting(self: DynamoRecordStore, drop_id: str, candidates: Any) -> Any:
        seen.append(self.max_in_flight)
        return insert_new(self, drop_id, candidates)

    monkeypatch.setattr(DynamoRecordStore, "insert_new", noting)
    key = "drops/support/concurrency.jsonl"
    body = drop(env, key, b'{"text": "the first record of this drop"}\n')
    tables = IngestTables(env.records_table, env.drops_table, env.control_table)

    # When the drop is ingested
    result = ingest_message(body, tables, IngestSettings(write_transactions_in_flight=3))

    # Then its records were written by a store with that many transactions in flight
    assert result.stored == 1
    assert seen == [3]


def test_a_drop_that_stores_nothing_writes_no_curated_copy(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURATED_BUCKET", env.curated_bucket)
    # Given a drop whose every line is quarantined
    key = "drops/docs/broken.jsonl"
    body = drop(env, key, b'{"text": 5}\n{oops\n')

    # When it is ingested
    assert invoke(body) == {"batchItemFailures": []}

    # Then the drop is complete with nothing stored, and no empty curated object exists
    manifest = drop_item(env, key, body)
    assert (manifest["status"], manifest["stored"], manifest["quarantined"]) == ("complete", 0, 2)
    listed = aws.client("s3").list_objects_v2(
        Bucket=env.curated_bucket, Prefix=f"curated/docs/{manifest['drop_id']}/"
    )
    assert listed.get("KeyCount", 0) == 0


def test_a_drop_under_an_invalid_dataset_name_is_quarantined_whole(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURATED_BUCKET", env.curated_bucket)
    # Given a file whose path names the dataset "a..b"
    key = "drops/a..b/tickets.jsonl"
    body = drop(env, key, b'{"text": "How do I reset my password?"}\n')

    # When it is ingested
    assert invoke(body) == {"batchItemFailures": []}

    # Then nothing is stored, and the one rejection names the reason and the value
    assert table_items(env.records_table) == []
    manifest = drop_item(env, key, body)
    assert (manifest["received"], manifest["quarantined"]) == (1, 1)
    assert manifest["reasons"] == {"invalid_dataset_name": 1}
    quarantine_key = f"quarantine/{manifest['drop_id']}/tickets.jsonl.jsonl"
    line = aws.client("s3").get_object(Bucket=env.raw_bucket, Key=quarantine_key)["Body"].read()
    rejected = json.loads(line)
    assert (rejected["line"], rejected["reason"]) == (0, "invalid_dataset_name")
    assert "'a..b'" in rejected["message"]


def test_hostile_lines_are_quarantined_and_the_rest_of_the_drop_is_stored(
    env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_SETTINGS", '{"max_line_bytes": 16384}')
    # Given a drop with a line nested 5,000 levels deep and a line over max_line_bytes
    key = "drops/support/hostile.jsonl"
    deep = '{"text": ' + "[" * 5000 + "]" * 5000 + "}"
    long_line = json.dumps({"text": "x" * 40_000})
    lines = ['{"text": "How do I reset my password?"}', deep, long_line, '{"text": "Thanks!"}']
    body = drop(env, key, "\n".join(lines).encode())

    # When the ingest Lambda receives its event
    assert invoke(body) == {"batchItemFailures": []}

    # Then the valid lines are stored, each hostile one quarantined with its reason ...
    manifest = drop_item(env, key, body)
    assert (manifest["status"], manifest["stored"]) == ("complete", 2)
    assert manifest["reasons"] == {"too_deep": 1, "line_too_long": 1}
    quarantine_key = f"quarantine/{manifest['drop_id']}/hostile.jsonl.jsonl"
    lines_out = aws.client("s3").get_object(Bucket=env.raw_bucket, Key=quarantine_key)["Body"]
    rejected = [json.loads(line) for line in lines_out.read().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejected] == [(2, "too_deep"), (3, "line_too_long")]
    # ... keeping an excerpt, not the whole line
    assert all(len(r["raw"]) <= 1024 for r in rejected)
    assert f"{len(long_line):,} bytes" in rejected[1]["message"]
