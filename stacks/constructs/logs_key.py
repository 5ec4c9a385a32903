"""The KMS key that encrypts a stack's CloudWatch log groups (one per stack)."""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.constructs.encryption_key import EncryptionKey

LOGS_KEY_ID = "LogsKey"


class LogsKey(Construct):
    """A rotating key that this region's CloudWatch Logs may use for this account's log
    groups only. Source: "Encrypt log data in CloudWatch Logs using AWS KMS", step 2 (the
    key policy with ``kms:EncryptionContext:aws:logs:arn``),
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html

    A key per stack, not the Storage data key: log groups live in every stack, and a
    cross-stack key would tie each function's log group to the stateful stack.
    """

    def __init__(self, scope: Construct, construct_id: str, *, retain: bool) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = EncryptionKey(
            self, "Key", description=f"TuneLoop {stack.stack_name} log groups", retain=retain
        ).key
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogs",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.{Aws.URL_SUFFIX}")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
            )
        )


def logs_key(scope: Construct, *, retain: bool) -> kms.IKey:
    """The log-group key of ``scope``'s stack, created on first use."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(LOGS_KEY_ID)
    if isinstance(existing, LogsKey):
        return existing.key
    return LogsKey(stack, LOGS_KEY_ID, retain=retain).key
