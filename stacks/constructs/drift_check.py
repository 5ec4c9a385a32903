"""The drift check: a schedule, the function it invokes, and the drift alarm.

The DriftCheck function (``lambdas/drift_check``) may read the captured traffic
(``capture/``) and the training data (``datasets/``) of the curated bucket, write its
reports under ``watch/drift/`` there, read the Control table and the version items, and
publish to the ``TuneLoop/Drift`` namespace; with ``retrain_on_drift`` it may also put
objects under its own drop prefix of the raw bucket (``drops/<retrain_dataset>/drift/``):
nothing else. The alarm on ``DriftDetected`` notifies people only: drift is a reason to
look at the traffic (and perhaps retrain), not to roll back.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.python_function import PythonFunction
from stacks.constructs.scheduled_function import grant_namespace_metrics, invoke_on_schedule
from stacks.grants import grant_objects, grant_table
from stacks.nag import WildcardAllowances
from tuneloop.watch.drift_service import NAMESPACE, REPORT_PREFIX, SCHEDULED

SCHEDULE_RETRY_ATTEMPTS = 2  # a retried invocation rewrites the same keys (window end)
# One datapoint per check; IGNORE keeps the alarm's state between checks (and through a
# window with too few prompts, which publishes no DriftDetected), so a drift stays one
# ALARM until a later check finds none. An hour covers any schedule of an hour or more.
ALARM_PERIOD = Duration.hours(1)
RUNBOOK = "docs/runbooks/drift.md"
# The verdict on 5,000 prompts a side takes ~4 s of one core (docs/monitoring.md, "Drift");
# the time goes to reading the window's capture objects, one GET each.
TIMEOUT = Duration.minutes(5)
MEMORY_MB = 1024


def grant_drift_metrics(function: iam.IGrantable, allowances: WildcardAllowances) -> None:
    """``cloudwatch:PutMetricData`` to ``TuneLoop/Drift`` only."""
    grant_namespace_metrics(function, allowances, NAMESPACE)


class DriftCheck(Construct):
    """``function`` (started by ``schedule``) and ``alarm`` (on the notify topic)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        curated: s3.IBucket,
        raw: s3.IBucket,
        control_table: dynamodb.Table,
        model_versions_table: dynamodb.Table,
        endpoint_name: str,
        notify_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.drift_check
        self.function = PythonFunction(
            self,
            "Function",
            name="drift_check",
            environment={
                "CURATED_BUCKET": curated.bucket_name,
                "RAW_BUCKET": raw.bucket_name,
                "CONTROL_TABLE": control_table.table_name,
                "MODEL_VERSIONS_TABLE": model_versions_table.table_name,
                "ENDPOINT_NAME": endpoint_name,
                # Read back with DriftCheckSettings.from_json, the schema synth validated.
                "DRIFT_CHECK_SETTINGS": settings.to_json(),
            },
            config=config,
            description="TuneLoop drift check: captured prompts against the training data",
            timeout=TIMEOUT,
            memory_size=MEMORY_MB,
        )
        fn, allow = self.function.function, self.function.allowances
        grant_objects(curated, fn, allow, prefix="capture/", access="read")
        grant_objects(curated, fn, allow, prefix="datasets/", access="read")
        grant_objects(curated, fn, allow, prefix=REPORT_PREFIX, access="put")
        for table in (control_table, model_versions_table):
            grant_table(table, fn, allow, write=False)
        grant_drift_metrics(fn, allow)
        if settings.retrain_on_drift:  # the continuous-improvement loop: a drop, nothing more
            grant_objects(raw, fn, allow, prefix=settings.drop_prefix, access="put")

        self.schedule = invoke_on_schedule(
            self,
            fn,
            expression=settings.schedule,
            enabled=settings.enabled,
            # tuneloop.watch.drift_service.request_input: what `tuneloop watch drift` sends.
            trigger=SCHEDULED,
            retry_attempts=SCHEDULE_RETRY_ATTEMPTS,
            description="Compare the endpoint's captured prompts with the training data",
            role_description="EventBridge Scheduler: invoke the drift check function",
        )
        self.alarm = cw.Alarm(
            self,
            "DriftAlarm",
            metric=cw.Metric(
                namespace=NAMESPACE,
                metric_name="DriftDetected",
                dimensions_map={"EndpointName": endpoint_name},
                statistic=cw.Stats.MAXIMUM,
                period=ALARM_PERIOD,
            ),
            alarm_description=(
                "The endpoint's prompts drifted away from the production model's training "
                "data.\n"
                "A drift check found a feature (length, language, PII-redaction or "
                "out-of-vocabulary rate) or the domain classifier past its bound; its "
                "report.html under watch/drift/ of the curated bucket shows which and by "
                f"how much. Runbook: {RUNBOOK}"
            ),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.IGNORE,
        )
        self.alarm.add_alarm_action(cw_actions.SnsAction(notify_topic))
