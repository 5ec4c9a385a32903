"""The SNS topics: people-facing notifications and the alarm topic that drives rollback."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.encryption_key import EncryptionKey

CLOUDWATCH = "cloudwatch.amazonaws.com"


class Notifications(Construct):
    """``notify_topic`` (deployments, rejections, failures, ingestion alarms) and
    ``alarm_topic`` (endpoint alarms → the Rollback Lambda), both KMS-encrypted with a
    key CloudWatch may use, and SSL-only.

    A topic policy replaces SNS's default one, so each topic's policy allows CloudWatch
    alarms of this account to publish (the only service publisher; the Lambdas and the
    state machine publish with identity policies). Sources: "Example cases for Amazon SNS
    access control" (a service publishing, with aws:SourceArn and aws:SourceAccount),
    https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html, and for the
    key, https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.alarm_arns = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name="*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        """Every CloudWatch alarm of this account and region (names are generated)."""
        self.key = EncryptionKey(
            self,
            "TopicKey",
            description="TuneLoop notification topics",
            retain=False,
            service_publishers={CLOUDWATCH: self.alarm_arns},
        ).key
        self.notify_topic = sns.Topic(
            self,
            "NotifyTopic",
            master_key=self.key,
            enforce_ssl=True,
            display_name=f"TuneLoop {config.stage} notifications",
        )
        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            master_key=self.key,
            enforce_ssl=True,
            display_name=f"TuneLoop {config.stage} endpoint alarms",
        )
        for topic in (self.notify_topic, self.alarm_topic):
            topic.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="AllowCloudWatchAlarms",
                    principals=[iam.ServicePrincipal(CLOUDWATCH)],
                    actions=["sns:Publish"],
                    resources=[topic.topic_arn],
                    conditions={
                        "StringEquals": {"aws:SourceAccount": stack.account},
                        "ArnLike": {"aws:SourceArn": self.alarm_arns},
                    },
                )
            )
