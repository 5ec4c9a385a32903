"""Powertools in the handlers: EMF metrics, the Lambda context in every log line, and the
ingest batch reported through ``BatchProcessor``.

The session's Powertools variables are the ones ``tests/conftest.py`` sets (service
``tuneloop-test``, namespace ``TuneLoop/test``), as the construct sets them on a function.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor
from aws_lambda_powertools.utilities.typing import LambdaContext

from tests.integration.aws_fixtures import (
    Platform,
    aws_credentials,
    handler_env,
    lambda_context,
    platform,
    use_handler_env,
)
from tests.integration.ingest_events import object_created, put_drop, sqs_batch
from tuneloop import aws
from tuneloop.connectors import ConnectorSettings, SqlSettings
from tuneloop.connectors.runner import RunResult
from tuneloop.gating.policy import parse_policy

__all__ = ["aws_credentials", "platform"]  # fixtures used by name

NAMESPACE = "TuneLoop/test"
SERVICE = "tuneloop-test"
HANDLERS = (
    "confirm_deployment",
    "connector",
    "deploy",
    "gate",
    "ingest",
    "prepare_dataset",
    "record_failure",
    "register",
    "retrain_trigger",
    "rollback",
)
CONNECTOR = ConnectorSettings(
    name="faq",
    kind="sql",
    schedule="rate(1 day)",
    dataset="faq",
    sql=SqlSettings(
        engine="sqlite",
        database="faq.db",
        table="faq",
        fields={"text": "answer"},
        watermark_column="version",
        key_column="id",
    ),
)


@dataclass(frozen=True)
class Context:
    """A Lambda context with a request id of its own, so a log line can only carry it if
    this invocation injected it (Powertools keeps appended keys between invocations)."""

    aws_request_id: str
    function_name: str = "tuneloop-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tuneloop-test"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def fresh_context() -> LambdaContext:
    return cast(LambdaContext, Context(aws_request_id=str(uuid.uuid4())))


@contextmanager
def log_lines(logger: Logger) -> Iterator[list[dict[str, Any]]]:
    """The JSON lines ``logger`` writes inside the block (its handler writes to the stdout
    of import time, which pytest's capsys does not see)."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        handler.setStream(previous)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines() if line)


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    """The embedded-metric-format documents among printed lines."""
    documents = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            document = json.loads(line)
            if "_aws" in document:
                documents.append(document)
    return documents


def only_emf(stdout: str) -> dict[str, Any]:
    (document,) = emf_documents(stdout)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert document["service"] == SERVICE
    return document


def dimensions(document: dict[str, Any]) -> list[set[str]]:
    return [set(group) for group in document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]]


def values(document: dict[str, Any], *names: str) -> tuple[list[float], ...]:
    """Each metric's values, in the order added (a single value may be a number or a list)."""
    found = tuple(document[name] for name in names)
    return tuple(list(v) if isinstance(v, list) else [float(v)] for v in found)


def metric_names(document: dict[str, Any]) -> set[str]:
    return {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


# --- the Lambda context in every handler's log lines -------------------------------------


class StopError(Exception):
    """Ends a probed invocation right after its first line of code."""


@pytest.mark.parametrize("name", HANDLERS)
def test_every_handler_logs_with_the_lambda_context(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a handler whose first step (reading its Env model) logs a line and stops
    module: ModuleType = importlib.import_module(f"lambdas.{name}.handler")

    def probe(model: type[Any]) -> Any:
        module.logger.info("probe")
        raise StopError

    monkeypatch.setattr(module, "load_env", probe)
    context = fresh_context()
    # When it is invoked
    with log_lines(module.logger) as lines, pytest.raises(StopError):
        module.handler({}, context)
    # Then the line carries this invocation's Lambda context
    (line,) = [entry for entry in lines if entry["message"] == "probe"]
    assert line["function_request_id"] == context.aws_request_id
    assert line["function_name"] == "tuneloop-test"
    assert line["service"] == SERVICE
    assert isinstance(line["cold_start"], bool)


# --- ingest: EMF counts and partial failures through BatchProcessor ----------------------


@pytest.fixture
def ingest_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    use_handler_env(monkeypatch, platform, "ingest")
    monkeypatch.setenv("RETRAIN_THRESHOLD", "100")
    return platform


def test_ingest_reports_a_failed_message_through_its_batch_processor(
    ingest_env: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdas.ingest import handler as ingest

    # Given a batch of a good drop event and a message that is no event at all
    good = object_created(
        ingest_env.raw_bucket,
        put_drop(ingest_env.raw_bucket, "drops/default/ok.jsonl", b'{"text": "fine"}\n'),
    )
    seen: list[str] = []
    original = BatchProcessor.failure_handler

    def spy(self: BatchProcessor, record: Any, exception: Any) -> Any:
        seen.append(record.message_id)
        return original(self, record, exception)

    monkeypatch.setattr(BatchProcessor, "failure_handler", spy)
    context = fresh_context()
    # When the handler processes it
    with log_lines(ingest.logger) as lines:
        response = ingest.handler(sqs_batch(good, '{"not": "an S3 event"}'), context)
    # Then the module's BatchProcessor failed only the second message, and that is the
    # partial batch response
    assert isinstance(ingest.processor, BatchProcessor)
    assert seen == ["msg-2"]
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-2"}]}
    assert ingest.processor.response() == response
    # and the counts came out as one EMF document in the stage's namespace
    document = only_emf(capsys.readouterr().out)
    assert dimensions(document) == [{"service"}]
    assert values(document, "RecordsReceived", "RecordsStored", "RecordsQuarantined") == (
        [1],
        [1],
        [0],
    )
    assert values(document, "MessagesFailed") == ([1],)
    # and the record handler's log lines carry the Lambda context too
    (processed,) = [line for line in lines if line["message"] == "drop processed"]
    assert processed["function_request_id"] == context.aws_request_id
    (failed,) = [line for line in lines if line["message"].startswith("message failed")]
    assert failed["message_id"] == "msg-2"


def test_ingest_adds_up_the_counts_of_every_drop_in_a_batch(
    ingest_env: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdas.ingest import handler as ingest

    bodies = [
        object_created(
            ingest_env.raw_bucket,
            put_drop(ingest_env.raw_bucket, f"drops/default/{n}.jsonl", data),
        )
        for n, data in enumerate([b'{"text": "first drop"}\n', b'{"text": "xy"}\n{oops\n'])
    ]

    assert ingest.handler(sqs_batch(*bodies), lambda_context()) == {"batchItemFailures": []}

    document = only_emf(capsys.readouterr().out)
    # one value per drop (EMF value arrays: CloudWatch sums them)
    assert values(document, "RecordsReceived", "RecordsStored", "RecordsQuarantined") == (
        [1, 2],
        [1, 0],
        [0, 2],
    )
    assert values(document, "MessagesFailed") == ([0],)


# --- the other handlers' metrics ---------------------------------------------------------


def test_retrain_trigger_counts_the_run_it_starts(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdas.retrain_trigger import handler as retrain_trigger

    use_handler_env(monkeypatch, platform, "retrain_trigger")

    retrain_trigger.handler({"force": True}, lambda_context())
    started = only_emf(capsys.readouterr().out)
    retrain_trigger.handler({"force": True}, lambda_context())  # one run at a time
    refused = only_emf(capsys.readouterr().out)

    assert values(started, "RetrainRunsStarted") + values(refused, "RetrainRunsStarted") == (
        [1],
        [0],
    )
    assert dimensions(started) == [{"service"}]


def test_record_failure_counts_the_failed_run(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdas.record_failure import handler as record_failure

    use_handler_env(monkeypatch, platform, "record_failure")
    aws.table(platform.model_versions_table).put_item(
        Item={"model_version": "v0003", "status": "training"}
    )

    record_failure.handler(
        {"model_version": "v0003", "error": {"Error": "States.Timeout", "Cause": ""}},
        lambda_context(),
    )

    document = only_emf(capsys.readouterr().out)
    assert metric_names(document) == {"RunFailures"}
    assert values(document, "RunFailures") == ([1],)


def test_rollback_counts_only_a_rollback_it_made(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdas.rollback import handler as rollback

    use_handler_env(monkeypatch, platform, "rollback")
    alarm = {"AlarmName": "tuneloop-5xx", "NewStateValue": "OK", "StateChangeTime": "t1"}
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(alarm)}}]}

    assert rollback.handler(event, lambda_context())["action"] == "ignored"
    ignored = only_emf(capsys.readouterr().out)
    monkeypatch.setattr(
        rollback, "roll_back_on_alarm", lambda notice, settings: {"action": "rolled_back"}
    )
    rollback.handler(event, lambda_context())
    rolled_back = only_emf(capsys.readouterr().out)

    assert values(ignored, "Rollbacks") + values(rolled_back, "Rollbacks") == ([0], [1])


def test_gate_counts_its_decision(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdas.gate import handler as gate

    names = Platform()
    monkeypatch.setenv("ARTIFACTS_BUCKET", names.artifacts_bucket)
    monkeypatch.setenv("MODEL_VERSIONS_TABLE", names.model_versions_table)
    monkeypatch.setenv("GATE_POLICY", names.gate_policy)
    monkeypatch.setenv("CONTROL_TABLE", names.control_table)
    # No admin override stored: the stage's policy is in force (no table read here).
    monkeypatch.setattr(gate, "run_policy", lambda table, line, fallback: parse_policy(fallback))
    event = {
        "model_version": "v2",
        "evaluation": {"job_name": "v2-eval", "output_path": "s3://tuneloop-artifacts/v2/"},
        "champion_version": "v1",
    }
    counts: list[tuple[list[float], ...]] = []
    for approved in (True, False):
        decision = {"approved": approved, "decision_s3_uri": "", "summary": "s"}
        monkeypatch.setattr(gate, "run_gate", lambda *args, d=decision, **kwargs: d)
        gate.handler(event, lambda_context())
        document = only_emf(capsys.readouterr().out)
        counts.append(values(document, "CandidatesApproved", "CandidatesRejected"))

    assert counts == [([1], [0]), ([0], [1])]


def test_prepare_dataset_counts_the_records_of_each_set(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdas.prepare_dataset import handler as prepare

    for key, value in handler_env(Platform(), "prepare_dataset").items():
        monkeypatch.setenv(key, value)
    frozen = SimpleNamespace(versions={}, as_result=lambda: {"benchmark_versions": {}})
    monkeypatch.setattr(prepare, "freeze_benchmarks", lambda *args, **kwargs: frozen)
    monkeypatch.setattr(prepare, "run_policy", lambda table, line, fallback: parse_policy(fallback))
    counts = {"record_count": 40, "heldout_count": 4, "replay_count": 8}
    monkeypatch.setattr(prepare, "prepare_dataset", lambda **kwargs: dict(counts))

    prepare.handler({"execution_name": "v0001"}, lambda_context())

    document = only_emf(capsys.readouterr().out)
    assert values(document, "DatasetRecords", "HeldoutRecords", "ReplayRecords") == (
        [40],
        [4],
        [8],
    )


def test_connector_metrics_carry_the_connector_name(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdas.connector import handler as connector

    monkeypatch.setenv("RAW_BUCKET", "tuneloop-raw")
    monkeypatch.setenv("CONTROL_TABLE", "Control")
    monkeypatch.setenv("CONNECTOR", CONNECTOR.to_json())
    run = RunResult(connector="faq", run_id="r1", rows=5, objects=["drops/faq/a.jsonl"])
    monkeypatch.setattr(connector, "run_connector", lambda *args, **kwargs: run)

    connector.handler({"connector": "faq"}, fresh_context())

    document = only_emf(capsys.readouterr().out)
    assert dimensions(document) == [{"connector", "service"}]
    assert document["connector"] == "faq"
    assert values(document, "ConnectorRows", "ConnectorObjects") == ([5], [1])
