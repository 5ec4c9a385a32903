"""CloudWatch alarms on the serving endpoint; they trigger rollback and blue/green
auto-rollback (their names go to the Deploy Lambda)."""

from __future__ import annotations

from aws_cdk import Duration, Fn
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import StageConfig

VARIANT_NAME = "AllTraffic"


class EndpointAlarms(Construct):
    """``errors_alarm``: ``Invocation5XXErrors`` (Sum, 1 min); ``latency_alarm``:
    ``ModelLatency`` (p99, 1 min), both on EndpointName + VariantName=AllTraffic, both
    acting on ``alarm_topic``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        alarm_topic: sns.ITopic,
        config: StageConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        thresholds = config.alarms
        dimensions = {"EndpointName": endpoint_name, "VariantName": VARIANT_NAME}
        self.errors_metric = cw.Metric(
            namespace="AWS/SageMaker",
            metric_name="Invocation5XXErrors",
            dimensions_map=dimensions,
            statistic=cw.Stats.SUM,
            period=Duration.minutes(1),
        )
        self.latency_metric = cw.Metric(
            namespace="AWS/SageMaker",
            metric_name="ModelLatency",
            dimensions_map=dimensions,
            statistic=cw.Stats.p(99),
            period=Duration.minutes(1),
            unit=cw.Unit.MICROSECONDS,
        )
        self.invocations_metric = cw.Metric(
            namespace="AWS/SageMaker",
            metric_name="Invocations",
            dimensions_map=dimensions,
            statistic=cw.Stats.SUM,
            period=Duration.minutes(1),
        )
        self.errors_alarm = self.errors_metric.create_alarm(
            self,
            "Invocation5XXErrors",
            alarm_description="Endpoint 5XX errors: roll back to the last-known-good model.",
            threshold=thresholds.invocation_5xx_errors,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=thresholds.evaluation_periods,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.latency_alarm = self.latency_metric.create_alarm(
            self,
            "ModelLatencyP99",
            alarm_description="Endpoint p99 model latency: roll back to the last-known-good model.",
            threshold=thresholds.model_latency_p99_microseconds,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=thresholds.evaluation_periods,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.alarms = (self.errors_alarm, self.latency_alarm)
        for alarm in self.alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
        self.alarm_names = Fn.join(",", [alarm.alarm_name for alarm in self.alarms])
        """``ROLLBACK_ALARM_NAMES`` for the Deploy Lambda (comma-separated)."""
