"""Ingestion: raw-bucket drop events → queue → Ingest Lambda; the scheduled RetrainTrigger."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.connectors import Connectors
from stacks.constructs.data_lake import DataLake
from stacks.constructs.ingest_queue import IngestQueue
from stacks.constructs.notifications import Notifications
from stacks.constructs.python_function import PythonFunction
from stacks.constructs.retrain_schedule import RetrainSchedule
from stacks.constructs.state_tables import StateTables
from stacks.grants import grant_objects, grant_table
from stacks.outputs import add_outputs
from tuneloop import stack_outputs as out
from tuneloop.ingest.settings import settings_to_json

INGEST_TIMEOUT = Duration.minutes(5)
# The AWS-managed "AWS SDK for pandas" layer brings pyarrow, which Parquet drops need.
AWS_SDK_PANDAS_LAYER_ACCOUNT = "336392948345"
AWS_SDK_PANDAS_LAYER_NAME = "AWSSDKPandas-Python312"
AWS_SDK_PANDAS_LAYER_VERSION = 16
# The optional redactor that calls Amazon Comprehend (names, addresses).
COMPREHEND_REDACTOR = "comprehend"


def comprehend_statement() -> iam.PolicyStatement:
    return iam.PolicyStatement(actions=["comprehend:DetectPiiEntities"], resources=["*"])


class IngestionStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        lake: DataLake,
        tables: StateTables,
        notifications: Notifications,
        state_machine: sfn.IStateMachine,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        trigger_env = {
            "CONTROL_TABLE": tables.control.table_name,
            "STATE_MACHINE_ARN": state_machine.state_machine_arn,
            "RETRAIN_THRESHOLD": str(config.retrain_threshold),
            # Ingest counts records per model line; the trigger starts one line's run.
            "MODEL_LINES": config.model_lines.to_json(),
        }
        self.ingest = PythonFunction(
            self,
            "Ingest",
            name="ingest",
            config=config,
            timeout=INGEST_TIMEOUT,
            memory_size=1024,
            description="Data drop → validated, deduplicated records",
            environment={
                "RECORDS_TABLE": tables.records.table_name,
                "DROPS_TABLE": tables.drops.table_name,
                "CURATED_BUCKET": lake.curated.bucket_name,
                # Redactors, quality thresholds, near-duplicates, chunk and segment sizes.
                "INGEST_SETTINGS": settings_to_json(config.ingest),
                **trigger_env,
            },
        )
        self.ingest.function.add_layers(
            lambda_.LayerVersion.from_layer_version_arn(
                self,
                "AwsSdkPandas",
                f"arn:{self.partition}:lambda:{self.region}:{AWS_SDK_PANDAS_LAYER_ACCOUNT}:layer:"
                f"{AWS_SDK_PANDAS_LAYER_NAME}:{AWS_SDK_PANDAS_LAYER_VERSION}",
            )
        )
        self.retrain_trigger = PythonFunction(
            self,
            "RetrainTrigger",
            name="retrain_trigger",
            config=config,
            description="Start a retrain run when enough new records and none running",
            environment=trigger_env,
        )
        self.queue = IngestQueue(
            self,
            "IngestQueue",
            raw_bucket=lake.raw,
            consumer_timeout=INGEST_TIMEOUT,
            notify_topic=notifications.notify_topic,
            config=config,
        )
        # Pull connectors declared in the stage config (none: no resources).
        self.connectors = Connectors(
            self,
            "Connectors",
            config=config,
            raw_bucket=lake.raw,
            control_table=tables.control,
            notify_topic=notifications.notify_topic,
        )
        RetrainSchedule(
            self,
            "RetrainSchedule",
            function=self.retrain_trigger.function,
            every=Duration.minutes(config.retrain_schedule_minutes),
        )

        ingest = self.ingest.function
        # Large drops are split into segments sent back to this queue (one per invocation).
        ingest.add_environment("INGEST_QUEUE_URL", self.queue.queue.queue_url)
        self.queue.queue.grant_send_messages(ingest)
        ingest.add_event_source(
            event_sources.SqsEventSource(
                self.queue.queue,
                batch_size=10,
                report_batch_item_failures=True,
            )
        )
        allow = self.ingest.allowances
        grant_objects(lake.raw, ingest, allow, prefix="drops/", access="read")
        grant_objects(lake.raw, ingest, allow, prefix="quarantine/", access="put")
        # Bodies too large for a Records item, and each drop's curated copy.
        grant_objects(lake.curated, ingest, allow, prefix="records/", access="put")
        grant_objects(lake.curated, ingest, allow, prefix="curated/", access="put")
        grant_table(tables.records, ingest, allow, write=True)
        grant_table(tables.drops, ingest, allow, write=True)
        if COMPREHEND_REDACTOR in config.ingest.redactors:
            # DetectPiiEntities has no resource to scope to (IAM takes only "*").
            ingest.add_to_role_policy(comprehend_statement())
            allow.allow_resource("*", "comprehend:DetectPiiEntities supports no resource ARN")
        for function in (self.ingest, self.retrain_trigger):
            grant_table(tables.control, function.function, function.allowances, write=True)
            state_machine.grant_start_execution(function.function)
            # "none running": ListExecutions(statusFilter=RUNNING) on the state machine.
            state_machine.grant(function.function, "states:ListExecutions")
        add_outputs(
            self,
            {
                out.INGEST_QUEUE: (self.queue.queue.queue_url, "Drop events for Ingest"),
                out.INGEST_DEAD_LETTER_QUEUE: (
                    self.queue.dead_letter_queue.queue_url,
                    "Drop events that failed ingestion repeatedly",
                ),
                out.QUEUE_KEY: (self.queue.key.key_arn, "KMS key of both queues"),
            },
        )
