"""Ingest: an SQS batch of S3 "Object Created" events → stored, duplicate or quarantined.

A large object is split into segments sent back to the same queue (``INGEST_QUEUE_URL``);
a segment message is ingested like an event, for its byte range of the object.

Each message goes through Powertools' ``BatchProcessor`` and the module's
:func:`record_handler`; failed messages are reported individually (partial batch response)
and retried. All writes are idempotent, so a retried or re-delivered message creates
nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.ingest import DEFAULT_SETTINGS, IngestTables, ingest_message, trigger_after_ingest
from tuneloop.ingest.service import defer_message, is_segment_message
from tuneloop.ingest.settings import IngestSettings, settings_from_json
from tuneloop.model_line_settings import ModelLines
from tuneloop.retrain import TRAINS_NO_LINE

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# An all-failed batch is reported like any other (no exception), so SQS retries each.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# A segment (IngestSettings.segment_bytes) starts only with this much of the timeout left.
SEGMENT_MIN_REMAINING_MS = 240_000
# Record counts of a processed drop, as metrics: (metric name, DropResult field).
RECORD_METRICS = (
    ("RecordsReceived", "received"),
    ("RecordsStored", "stored"),
    ("RecordsDuplicate", "duplicate"),
    ("RecordsNearDuplicate", "near_duplicate"),
    ("RecordsQuarantined", "quarantined"),
)


@dataclass(frozen=True)
class Env:
    records_table: str
    drops_table: str
    control_table: str
    state_machine_arn: str
    retrain_threshold: int
    # Where segments of large drops are sent; empty: every drop is processed whole.
    ingest_queue_url: str = ""
    # Bodies of records over DynamoDB's item limit and the curated copies of drops;
    # empty: neither is written (oversized records fail to store).
    curated_bucket: str = ""
    # IngestSettings as JSON (docs/contracts.md); empty: the defaults.
    ingest_settings: str = ""
    # ModelLines.to_json(): a record counts for the lines that list its dataset ("[]": none).
    model_lines: str = "[]"


@dataclass
class Invocation:
    """What the messages of one invocation share: its settings and its segment budget."""

    env: Env
    settings: IngestSettings
    tables: IngestTables
    context: LambdaContext
    segments_started: int = 0


@tracer.capture_method
def record_handler(record: SQSRecord, invocation: Invocation) -> dict[str, Any]:
    """Ingest one message; an exception marks it failed (retried, then the DLQ)."""
    env = invocation.env
    if env.ingest_queue_url and is_segment_message(record.body):
        # A segment takes most of an invocation: one per invocation, and only with
        # enough time left; the others go back to the queue as new messages.
        if (
            invocation.segments_started
            or _remaining_ms(invocation.context) < SEGMENT_MIN_REMAINING_MS
        ):
            defer_message(env.ingest_queue_url, record.body)
            logger.info("segment deferred to another invocation")
            return {"status": "deferred"}
        invocation.segments_started += 1
    try:
        result = ingest_message(
            record.body, invocation.tables, invocation.settings, queue_url=env.ingest_queue_url
        ).as_dict()
    except Exception:
        # Records never fail a message (they are quarantined); what does is retried
        # and may reach the DLQ, so its cause is logged here.
        logger.exception("message failed; it is retried", extra={"message_id": record.message_id})
        raise
    for metric, field in RECORD_METRICS:
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=int(result[field]))
    logger.info("drop processed", extra={"drop": result})
    if TRAINS_NO_LINE in str(result.get("reason", "")):
        logger.warning(result["reason"], extra={"key": result["key"]})
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    # A bad value fails every message with an error naming the field (then the DLQ).
    settings = settings_from_json(env.ingest_settings) if env.ingest_settings else DEFAULT_SETTINGS
    model_lines = ModelLines.from_json(env.model_lines)
    tables = IngestTables(
        env.records_table,
        env.drops_table,
        env.control_table,
        curated_bucket=env.curated_bucket,
        model_lines=model_lines,
    )
    invocation = Invocation(env, settings, tables, context)
    response = process_partial_response(
        event=event,
        # The invocation's state is an argument, not a closure: the handler stays one
        # module-level function, traced per message.
        record_handler=partial(record_handler, invocation=invocation),
        processor=processor,
        context=context,
    )
    failed = len(response.get("batchItemFailures", []))
    metrics.add_metric(name="MessagesFailed", unit=MetricUnit.Count, value=failed)
    trigger = trigger_after_ingest(
        control_table=env.control_table,
        state_machine_arn=env.state_machine_arn,
        threshold=env.retrain_threshold,
        model_lines=model_lines,
    )
    logger.info("retrain trigger", extra={"trigger": trigger})
    return dict(response)


def _remaining_ms(context: LambdaContext) -> int:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    # Outside Lambda (tests, scripts) there is no deadline.
    return int(remaining()) if callable(remaining) else SEGMENT_MIN_REMAINING_MS
