"""Continuous evaluation: a schedule, the function it invokes, and the regression alarm.

The ContinuousEvaluation function (``lambdas/continuous_evaluation``) may read the version
items, the Control table (production, the gate policy in force, and each model line's) and
the Benchmarks table, and start executions of the benchmark run state machine: nothing
else. The BenchmarkRun function's Record step publishes the ``TuneLoop/Evaluation``
metrics (:func:`grant_evaluation_metrics`); the alarm on ``Regression`` notifies people
only (no rollback: a drop on a newer benchmark version is for a person to judge).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.python_function import PythonFunction
from stacks.constructs.scheduled_function import grant_namespace_metrics, invoke_on_schedule
from stacks.grants import grant_table
from stacks.nag import WildcardAllowances
from tuneloop.watch.evaluation import NAMESPACE, SCHEDULED

SCHEDULE_RETRY_ATTEMPTS = 2  # a retried invocation starts nothing twice (execution names)
# Scheduled runs finish within hours of each other; IGNORE keeps the alarm's state until
# the next evaluation publishes, so a regression stays one ALARM, not one per day.
ALARM_PERIOD = Duration.hours(6)
RUNBOOK = "docs/runbooks/evaluation-regression.md"


def grant_evaluation_metrics(function: iam.IGrantable, allowances: WildcardAllowances) -> None:
    """``cloudwatch:PutMetricData`` to ``TuneLoop/Evaluation`` only."""
    grant_namespace_metrics(function, allowances, NAMESPACE)


class ContinuousEvaluation(Construct):
    """``function`` (started by ``schedule``) and ``alarm`` (on the notify topic)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        benchmark_run_state_machine: sfn.IStateMachine,
        model_versions_table: dynamodb.Table,
        control_table: dynamodb.Table,
        benchmarks_table: dynamodb.Table,
        artifacts: s3.IBucket,
        notify_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.continuous_evaluation
        self.function = PythonFunction(
            self,
            "Function",
            name="continuous_evaluation",
            environment={
                "ARTIFACTS_BUCKET": artifacts.bucket_name,
                "BENCHMARKS_TABLE": benchmarks_table.table_name,
                "CONTROL_TABLE": control_table.table_name,
                "MODEL_VERSIONS_TABLE": model_versions_table.table_name,
                "BENCHMARK_RUN_STATE_MACHINE_ARN": benchmark_run_state_machine.state_machine_arn,
                # The stage's policy; an admin's (Control "gate_policy") wins, as at the gate.
                "GATE_POLICY": config.gate_policy.to_json(),
                "MARGIN_WITHOUT_DELTA": str(settings.margin_without_delta),
                # With lines, each line's production on the line's policy (same doc).
                "MODEL_LINES": config.model_lines.to_json(),
            },
            config=config,
            description="TuneLoop continuous evaluation: benchmark runs of production",
        )
        fn, allow = self.function.function, self.function.allowances
        for table in (model_versions_table, control_table, benchmarks_table):
            grant_table(table, fn, allow, write=False)
        benchmark_run_state_machine.grant_start_execution(fn)

        self.schedule = invoke_on_schedule(
            self,
            fn,
            expression=settings.schedule,
            enabled=settings.enabled,
            # tuneloop.watch.evaluation.schedule_input: what `tuneloop watch evaluate` sends.
            trigger=SCHEDULED,
            retry_attempts=SCHEDULE_RETRY_ATTEMPTS,
            description="Re-evaluate the production model on the gate's suites",
            role_description="EventBridge Scheduler: invoke the continuous evaluation function",
        )
        self.alarm = cw.Alarm(
            self,
            "RegressionAlarm",
            metric=cw.Metric(
                namespace=NAMESPACE,
                metric_name="Regression",
                statistic=cw.Stats.MAXIMUM,
                period=ALARM_PERIOD,
            ),
            alarm_description=(
                "The production model scored worse than at its gate on a scheduled "
                "re-evaluation.\n"
                "A suite dropped beyond the gate's margin (or below its floor); the benchmark "
                "run's regression_check says which, by how much, and whether the benchmark "
                f"version changed since the gate. Runbook: {RUNBOOK}"
            ),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.IGNORE,
        )
        self.alarm.add_alarm_action(cw_actions.SnsAction(notify_topic))
