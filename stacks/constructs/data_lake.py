"""The S3 data lake: raw, curated and artifacts buckets plus their access-logs bucket."""

from __future__ import annotations

import math
from typing import cast

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import StageConfig


def checkpoint_retention_days(config: StageConfig) -> int:
    """A week, or a day more than a training job can last. With spot, SageMaker's max wait
    covers waiting and running together, so it bounds the job; without, the runtime does."""
    longest_job_minutes = max(
        config.training_max_runtime_minutes, config.training_spot_max_wait_minutes
    )
    return max(7, math.ceil(longest_job_minutes / (24 * 60)) + 1)


class DataLake(Construct):
    """Versioned, SSL-only, KMS-encrypted, access-logged buckets with lifecycle rules.

    - ``raw``: data drops under ``drops/`` and rejects under ``quarantine/``; sends its
      events to EventBridge through the bucket's own ``NotificationConfiguration``
      (no CDK notifications custom resource, so no Lambda at deploy time).
    - ``curated``: training sets (``datasets/``), sampled endpoint traffic (``capture/``).
    - ``artifacts``: benchmarks, SageMaker job output, gate decisions.
    - ``access_logs``: server access logs of the three (S3-managed keys: log delivery
      cannot write with a customer-managed KMS key).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, key: kms.IKey, config: StageConfig
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        noncurrent = Duration.days(config.noncurrent_version_retention_days)
        common_rule = s3.LifecycleRule(
            id="expire-noncurrent-and-incomplete",
            abort_incomplete_multipart_upload_after=Duration.days(7),
            noncurrent_version_expiration=noncurrent,
        )

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            removal_policy=removal,
            lifecycle_rules=[
                common_rule,
                s3.LifecycleRule(
                    id="expire-logs",
                    expiration=Duration.days(config.access_log_retention_days),
                ),
            ],
        )

        def data_bucket(bucket_id: str, rules: list[s3.LifecycleRule], prefix: str) -> s3.Bucket:
            return s3.Bucket(
                self,
                bucket_id,
                encryption=s3.BucketEncryption.KMS,
                encryption_key=key,
                bucket_key_enabled=True,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                enforce_ssl=True,
                versioned=True,
                server_access_logs_bucket=self.access_logs,
                server_access_logs_prefix=prefix,
                removal_policy=removal,
                lifecycle_rules=[common_rule, *rules],
            )

        self.raw = data_bucket(
            "Raw",
            [
                s3.LifecycleRule(
                    id="expire-quarantine",
                    prefix="quarantine/",
                    expiration=Duration.days(config.quarantine_retention_days),
                ),
                s3.LifecycleRule(
                    id="drops-to-infrequent-access",
                    prefix="drops/",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                ),
            ],
            "raw/",
        )
        cfn_raw = cast(s3.CfnBucket, self.raw.node.default_child)
        cfn_raw.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )

        self.curated = data_bucket(
            "Curated",
            [
                s3.LifecycleRule(
                    id="datasets-to-infrequent-access",
                    prefix="datasets/",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                ),
                # Captured endpoint traffic (docs/monitoring.md, "Data capture"): raw
                # prompts and answers, kept only as long as the stage's retention says.
                s3.LifecycleRule(
                    id="expire-capture",
                    prefix="capture/",
                    expiration=Duration.days(config.quality.capture_retention_days),
                ),
            ],
            "curated/",
        )
        self.artifacts = data_bucket(
            "Artifacts",
            [
                # Training checkpoints only serve to resume an interrupted job; a finished
                # run's adapter is in models/. Kept past the longest run plus its spot wait.
                s3.LifecycleRule(
                    id="expire-checkpoints",
                    prefix="checkpoints/",
                    expiration=Duration.days(checkpoint_retention_days(config)),
                )
            ],
            "artifacts/",
        )
