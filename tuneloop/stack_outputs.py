"""The stacks' ``CfnOutput`` ids: the names an operator, the CLI, the console and the local
platform look up (``aws cloudformation describe-stacks``), never another function's
environment. The ids are stable and export-free (docs/stacks.md, "Outputs")."""

from __future__ import annotations

# Storage
RAW_BUCKET = "RawBucketName"
CURATED_BUCKET = "CuratedBucketName"
ARTIFACTS_BUCKET = "ArtifactsBucketName"
ACCESS_LOGS_BUCKET = "AccessLogsBucketName"
RECORDS_TABLE = "RecordsTableName"
DROPS_TABLE = "DropsTableName"
MODEL_VERSIONS_TABLE = "ModelVersionsTableName"
CONTROL_TABLE = "ControlTableName"
BENCHMARKS_TABLE = "BenchmarksTableName"
AUDIT_TABLE = "AuditTableName"
INCIDENTS_TABLE = "IncidentsTableName"
DATA_KEY = "DataKeyArn"
# Serving
ENDPOINT_NAME = "EndpointName"
NOTIFY_TOPIC = "NotifyTopicArn"
ALARM_TOPIC = "AlarmTopicArn"
ROLLBACK_FUNCTION = "RollbackFunctionName"
TOPIC_KEY = "TopicKeyArn"
MODEL_LINES = "ModelLines"
"""``ModelLines.to_json()``: the lines served on the endpoint (``[]`` without lines)."""
# Pipeline
STATE_MACHINE = "StateMachineArn"
SAGEMAKER_ROLE = "SageMakerRoleArn"
MODEL_PACKAGE_GROUP = "ModelPackageGroupName"
RELEASE_STATE_MACHINE = "ReleaseStateMachineArn"
BENCHMARK_RUN_STATE_MACHINE = "BenchmarkRunStateMachineArn"
CONTINUOUS_EVALUATION_FUNCTION = "ContinuousEvaluationFunctionName"
DRIFT_CHECK_FUNCTION = "DriftCheckFunctionName"
# Ingestion
INGEST_QUEUE = "IngestQueueUrl"
INGEST_DEAD_LETTER_QUEUE = "IngestDeadLetterQueueUrl"
QUEUE_KEY = "IngestQueueKeyArn"
# Console
CONSOLE_URL = "ConsoleUrl"
USER_POOL_ID = "UserPoolId"
CONSOLE_ROLE = "ConsoleRoleArn"
INCIDENTS_FUNCTION = "IncidentsFunctionName"

STACK_OUTPUTS = {
    "Storage": (
        RAW_BUCKET,
        CURATED_BUCKET,
        ARTIFACTS_BUCKET,
        ACCESS_LOGS_BUCKET,
        RECORDS_TABLE,
        DROPS_TABLE,
        MODEL_VERSIONS_TABLE,
        CONTROL_TABLE,
        BENCHMARKS_TABLE,
        AUDIT_TABLE,
        INCIDENTS_TABLE,
        DATA_KEY,
    ),
    "Serving": (
        ENDPOINT_NAME,
        NOTIFY_TOPIC,
        ALARM_TOPIC,
        ROLLBACK_FUNCTION,
        TOPIC_KEY,
        MODEL_LINES,
    ),
    "Pipeline": (
        STATE_MACHINE,
        SAGEMAKER_ROLE,
        MODEL_PACKAGE_GROUP,
        RELEASE_STATE_MACHINE,
        BENCHMARK_RUN_STATE_MACHINE,
        CONTINUOUS_EVALUATION_FUNCTION,
        DRIFT_CHECK_FUNCTION,
    ),
    "Ingestion": (INGEST_QUEUE, INGEST_DEAD_LETTER_QUEUE, QUEUE_KEY),
    "Console": (CONSOLE_URL, USER_POOL_ID, CONSOLE_ROLE, INCIDENTS_FUNCTION),
}
"""Every output id, by the stack (``TuneLoop-<stage>-<part>``) that declares it."""


def stack_name(stage: str, part: str) -> str:
    """``TuneLoop-<stage>-<part>``, as ``app.py`` names the stacks."""
    return f"TuneLoop-{stage}-{part}"


def read_outputs(stage: str, *, skip_missing_stacks: bool = False) -> dict[str, str]:
    """Every declared output of the stage's stacks (``DescribeStacks``), by id.

    The CLI and the console find names this way, on AWS as against the emulator. With
    ``skip_missing_stacks`` a stack that is not deployed (yet) contributes nothing instead of
    raising; its outputs are then simply absent."""
    from botocore.exceptions import ClientError

    from tuneloop import aws

    cloudformation = aws.client("cloudformation")
    found: dict[str, str] = {}
    for part, ids in STACK_OUTPUTS.items():
        try:
            response = cloudformation.describe_stacks(StackName=stack_name(stage, part))
        except ClientError as exc:
            if skip_missing_stacks and "does not exist" in str(exc):
                continue
            raise
        (stack,) = response["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        found.update({output_id: outputs[output_id] for output_id in ids if output_id in outputs})
    return found
