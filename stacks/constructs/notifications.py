"""The SNS topics: people-facing notifications and the alarm topic that drives rollback."""

from __future__ import annotations

from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.encryption_key import EncryptionKey


class Notifications(Construct):
    """``notify_topic`` (deployments, rejections, failures, ingestion alarms) and
    ``alarm_topic`` (endpoint alarms → the Rollback Lambda), both KMS-encrypted with a
    key CloudWatch may use, and SSL-only."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.key = EncryptionKey(
            self,
            "TopicKey",
            description="TuneLoop notification topics",
            retain=False,
            service_principals=["cloudwatch.amazonaws.com"],
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
