"""S3 "Object Created" events for data drops → EventBridge rule → SQS (+ DLQ) with a
DLQ-depth alarm."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.encryption_key import EncryptionKey

DROPS_PREFIX = "drops/"
MAX_RECEIVE_COUNT = 5


class IngestQueue(Construct):
    """``queue`` buffers drop events for the Ingest Lambda; after ``MAX_RECEIVE_COUNT``
    failed receives a message moves to ``dead_letter_queue``, whose depth alarms to
    ``notify_topic`` (people, not the rollback topic). Both queues are KMS-encrypted and
    SSL-only."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        raw_bucket: s3.IBucket,
        consumer_timeout: Duration,
        notify_topic: sns.ITopic,
        config: StageConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = EncryptionKey(
            self, "QueueKey", description="TuneLoop ingest queues", retain=False
        ).key
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            # AWS's guidance for Lambda event sources: at least 6x the function timeout.
            visibility_timeout=Duration.seconds(consumer_timeout.to_seconds() * 6),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        self.rule = events.Rule(
            self,
            "DropCreated",
            description="Data drops in the raw bucket → ingest queue",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [raw_bucket.bucket_name]},
                    "object": {"key": [{"prefix": DROPS_PREFIX}]},
                },
            ),
            targets=[targets.SqsQueue(self.queue)],
        )
        self.dlq_alarm = self.dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic=cw.Stats.MAXIMUM
        ).create_alarm(
            self,
            "DeadLetterQueueDepth",
            alarm_description="Drop events failed ingestion repeatedly; see the DLQ.\n"
            "Runbook: docs/runbooks/ingest-dlq.md",
            threshold=config.alarms.dlq_messages,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.dlq_alarm.add_alarm_action(cw_actions.SnsAction(notify_topic))
