"""CloudWatch alarms on the serving endpoint; they trigger rollback and blue/green
auto-rollback (their names go to the Deploy Lambda).

Besides 5XX errors and p99 latency, three quality alarms watch the answers themselves
(``TuneLoop/Endpoint``, published by the serving container as EMF, docs/monitoring.md):
the empty-answer, truncation and refusal rates, each the Average of per-answer 0/1 values
over the stage's window, on the EndpointName dimension (whichever version serves). Deploy
raises a new version's bound to the previous version's rate x factor when that is higher
(``tuneloop.watch.quality_thresholds``).

With model lines, each line's adapter component has the same five alarms on its own
metrics: ``AWS/SageMaker`` errors and latency on ``InferenceComponentName`` (as SageMaker
publishes a component's), the quality rates on ``[EndpointName, InferenceComponentName]``.
They act on the same topic; the Rollback Lambda reads which line an alarm belongs to from
``MODEL_LINE_ALARMS`` (alarm name → line) and rolls back that line only. Deploy re-bounds a
line's quality alarms (``LINE_QUALITY_ALARMS``: line → kind → name) from the line's
outgoing version when it deploys that line."""

from __future__ import annotations

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import StageConfig
from stacks.nag import WildcardAllowances
from tuneloop.watch.quality import NAMESPACE, QUALITY_METRICS, QualitySettings

VARIANT_NAME = "AllTraffic"
_QUALITY_MEANING = {
    "empty": "Too many empty answers (nothing but whitespace)",
    "truncated": "Too many answers cut off at the token limit",
    "refusal": "Too many answers refuse the question",
}


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
            alarm_description="Endpoint 5XX errors: roll back to the last-known-good model.\n"
            "Runbook: docs/runbooks/endpoint-errors.md",
            threshold=thresholds.invocation_5xx_errors,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=thresholds.evaluation_periods,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.latency_alarm = self.latency_metric.create_alarm(
            self,
            "ModelLatencyP99",
            alarm_description="Endpoint p99 model latency: roll back to the last-known-good "
            "model.\nRunbook: docs/runbooks/endpoint-latency.md",
            threshold=thresholds.model_latency_p99_microseconds,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=thresholds.evaluation_periods,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        quality = config.quality
        self.quality_alarms: dict[str, cw.Alarm] = {}
        """Kind (``empty``, ``truncated``, ``refusal``) → its rate alarm."""
        for kind in QUALITY_METRICS:
            self.quality_alarms[kind] = _quality_alarm(
                self,
                kind,
                quality,
                {"EndpointName": endpoint_name},
                meaning=f"{_QUALITY_MEANING[kind]}: roll back to the last-known-good model",
                whose="answers",
                previous="the previous version's rate",
            )
        self.alarms = (self.errors_alarm, self.latency_alarm, *self.quality_alarms.values())
        for alarm in self.alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
        self.alarm_names = Fn.join(",", [alarm.alarm_name for alarm in self.alarms])
        """``ROLLBACK_ALARM_NAMES`` for the Deploy Lambda (comma-separated)."""
        self.quality_alarm_names = Stack.of(self).to_json_string(
            {kind: alarm.alarm_name for kind, alarm in self.quality_alarms.items()}
        )
        """``QUALITY_ALARMS`` for the Deploy Lambda (JSON: kind → alarm name)."""
        self.line_quality_alarms: dict[str, dict[str, cw.Alarm]] = {}
        """Model line → kind → its component's rate alarm (filled by ``_line_alarms``)."""
        self.line_alarms: dict[str, tuple[cw.Alarm, ...]] = {
            line: self._line_alarms(line, endpoint_name, config)
            for line in config.model_lines.names
        }
        """Model line → its component's alarms (errors, latency, the three quality rates)."""
        for alarms in self.line_alarms.values():
            for alarm in alarms:
                alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
        self.line_of_alarm = Stack.of(self).to_json_string(
            {
                alarm.alarm_name: line
                for line, alarms in self.line_alarms.items()
                for alarm in alarms
            }
        )
        """``MODEL_LINE_ALARMS`` for the Rollback Lambda (JSON: alarm name → model line)."""
        self.line_quality_alarm_names = Stack.of(self).to_json_string(
            {
                line: {kind: alarm.alarm_name for kind, alarm in alarms.items()}
                for line, alarms in self.line_quality_alarms.items()
            }
        )
        """``LINE_QUALITY_ALARMS`` for the Deploy Lambda (JSON: line → kind → alarm name)."""

    def _line_alarms(
        self, line: str, endpoint_name: str, config: StageConfig
    ) -> tuple[cw.Alarm, ...]:
        thresholds, quality = config.alarms, config.quality
        component = {"InferenceComponentName": line}
        scope = Construct(self, f"Line-{line}")
        rollback = f"roll back model line {line} to its last-known-good version"
        errors = cw.Metric(
            namespace="AWS/SageMaker",
            metric_name="Invocation5XXErrors",
            dimensions_map=component,
            statistic=cw.Stats.SUM,
            period=Duration.minutes(1),
        ).create_alarm(
            scope,
            "Invocation5XXErrors",
            alarm_description=f"5XX errors of model line {line}'s component: {rollback}.\n"
            "Runbook: docs/runbooks/endpoint-errors.md",
            threshold=thresholds.invocation_5xx_errors,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=thresholds.evaluation_periods,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        latency = cw.Metric(
            namespace="AWS/SageMaker",
            metric_name="ModelLatency",
            dimensions_map=component,
            statistic=cw.Stats.p(99),
            period=Duration.minutes(1),
            unit=cw.Unit.MICROSECONDS,
        ).create_alarm(
            scope,
            "ModelLatencyP99",
            alarm_description=f"p99 model latency of model line {line}'s component: "
            f"{rollback}.\nRunbook: docs/runbooks/endpoint-latency.md",
            threshold=thresholds.model_latency_p99_microseconds,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=thresholds.evaluation_periods,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        rates = {
            kind: _quality_alarm(
                scope,
                kind,
                quality,
                {"EndpointName": endpoint_name, **component},
                meaning=f"{_QUALITY_MEANING[kind]} from model line {line}: {rollback}",
                whose="the line's answers",
                previous="the line's previous version's rate",
            )
            for kind in QUALITY_METRICS
        }
        self.line_quality_alarms[line] = rates
        return (errors, latency, *rates.values())

    def grant_set_quality_thresholds(
        self, grantee: iam.IGrantable, allowances: WildcardAllowances
    ) -> None:
        """Read the outgoing version's rates and rewrite the quality alarms' bounds: the
        endpoint's and each model line's, no other alarm."""
        arns = [alarm.alarm_arn for alarm in self.quality_alarms.values()]
        arns += [
            alarm.alarm_arn
            for alarms in self.line_quality_alarms.values()
            for alarm in alarms.values()
        ]
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"], resources=arns
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["cloudwatch:GetMetricStatistics"], resources=["*"])
        )
        allowances.allow_resource(
            "*", "cloudwatch:GetMetricStatistics supports no resource-level permissions."
        )


def _quality_alarm(
    scope: Construct,
    kind: str,
    quality: QualitySettings,
    dimensions: dict[str, str],
    *,
    meaning: str,
    whose: str,
    previous: str,
) -> cw.Alarm:
    """The rate alarm of one quality kind on ``dimensions`` (the endpoint's, or a line's
    component's); Deploy re-bounds it from the outgoing version's rate."""
    metric_name = QUALITY_METRICS[kind]
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=metric_name,
        dimensions_map=dimensions,
        statistic=cw.Stats.AVERAGE,
        period=Duration.minutes(quality.window_minutes),
    ).create_alarm(
        scope,
        f"Quality{metric_name}Rate",
        alarm_description=(
            f"{meaning}.\n"
            f"Share of {whose} over {quality.window_minutes} min above "
            f"{quality.max_rate(kind)} (or {previous} x "
            f"{quality.baseline_factor}, set by Deploy). "
            f"Runbook: docs/runbooks/quality-{kind}.md"
        ),
        threshold=quality.max_rate(kind),
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=quality.evaluation_periods,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
    )
