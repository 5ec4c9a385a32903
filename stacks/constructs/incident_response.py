"""Incident response: the Incidents function, subscribed to both SNS topics.

It may read the tables an incident's context comes from (Control, ModelVersions), the
training reports and gate decisions under ``jobs/`` and ``gate/`` of the artifacts bucket
and the dataset manifests under ``datasets/`` of the curated bucket, read the alarm's
metric, write the Incidents table, publish to the notify topic and read the webhook secret
when the stage names one: nothing else (tuneloop/incidents/).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.data_lake import DataLake
from stacks.constructs.python_function import PythonFunction
from stacks.constructs.state_tables import StateTables
from stacks.grants import KMS_ACTIONS, grant_objects, grant_table


class IncidentResponse(Construct):
    """``function``: every alarm notification on ``notify_topic`` and ``alarm_topic``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        names: Mapping[str, str],
        lake: DataLake,
        tables: StateTables,
        notify_topic: sns.ITopic,
        alarm_topic: sns.ITopic,
        console_url: str,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.incidents
        stack = Stack.of(self)
        self.function = PythonFunction(
            self,
            "Function",
            name="incidents",
            description="TuneLoop incidents: every alarm that fires opens one",
            environment={
                # The operations views' names (without the audit table: nothing here reads it).
                "PLATFORM_NAMES": stack.to_json_string({**names, "audit_table": ""}),
                "INCIDENTS_TABLE": tables.incidents.table_name,
                "NOTIFY_TOPIC_ARN": notify_topic.topic_arn,
                "ALARM_TOPIC_ARN": alarm_topic.topic_arn,
                "CONSOLE_URL": console_url,
                "METRIC_MINUTES_BEFORE": str(settings.metric_minutes_before),
                "WEBHOOK_SECRET_NAME": settings.webhook_secret_name,
            },
            config=config,
            timeout=Duration.minutes(1),
        )
        fn, allow = self.function.function, self.function.allowances
        grant_table(tables.incidents, fn, allow, write=True)
        for table in (tables.control, tables.model_versions):
            grant_table(table, fn, allow, write=False)
        for prefix in ("jobs/", "gate/"):
            grant_objects(lake.artifacts, fn, allow, prefix=prefix, access="read")
        grant_objects(lake.curated, fn, allow, prefix="datasets/", access="read")
        notify_topic.grant_publish(fn)
        allow.allow_action("kms:GenerateDataKey*", KMS_ACTIONS["kms:GenerateDataKey*"])
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=["cloudwatch:GetMetricStatistics"], resources=["*"])
        )
        allow.allow_resource(
            "*",
            "cloudwatch:GetMetricStatistics supports no resource-level permissions (Service "
            "Authorization Reference, Amazon CloudWatch); it reads the alarm's metric only.",
        )
        if settings.webhook_secret_name:
            name = settings.webhook_secret_name
            secret = (
                secretsmanager.Secret.from_secret_partial_arn(self, "WebhookSecret", name)
                if name.startswith("arn:")
                else secretsmanager.Secret.from_secret_name_v2(self, "WebhookSecret", name)
            )
            secret.grant_read(fn)
        for topic in (notify_topic, alarm_topic):
            topic.add_subscription(subscriptions.LambdaSubscription(fn))
