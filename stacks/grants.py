"""Grants with their cdk-nag acknowledgments side by side.

CDK's ``grant_*`` methods use wildcard action groups (``s3:GetObject*``,
``kms:GenerateDataKey*``) and object wildcards (``<bucket>/prefix/*``). Each helper here
grants, then accepts exactly the findings that grant causes, with the reason.
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3

from stacks.nag import WildcardAllowances
from tuneloop.planning.run_check import model_config_location

KMS_ACTIONS = {
    "kms:GenerateDataKey*": "CDK's grant for a KMS-encrypted bucket/table/topic: data-key "
    "generation variants (GenerateDataKey, ...WithoutPlaintext) on that one key.",
    "kms:ReEncrypt*": "CDK's grant for a KMS-encrypted bucket/table: ReEncryptFrom/To on "
    "that one key.",
}
S3_READ_ACTIONS = {
    "s3:GetObject*": "CDK's read grant: GetObject and its version/ACL/tagging variants, "
    "limited to the granted prefix of one bucket.",
    "s3:GetBucket*": "CDK's read grant: bucket metadata (location, versioning) of one bucket.",
    "s3:List*": "CDK's read grant: listing the one bucket (prefix-scoped reads need it).",
}
S3_WRITE_ACTIONS = {
    "s3:Abort*": "CDK's write grant: abort multipart uploads in the granted prefix.",
    "s3:DeleteObject*": "CDK's write grant: replace/delete objects in the granted prefix "
    "(the bucket is versioned, so earlier versions are kept).",
}


def grant_objects(
    bucket: s3.IBucket,
    grantee: iam.IGrantable,
    allowances: WildcardAllowances,
    *,
    prefix: str,
    access: Literal["read", "read_write", "put"],
) -> None:
    """Objects under ``prefix`` (e.g. ``"datasets/"``) of ``bucket``."""
    pattern = f"{prefix}*"
    actions: dict[str, str] = {}
    if access == "read":
        bucket.grant_read(grantee, pattern)
        actions = S3_READ_ACTIONS
    elif access == "read_write":
        bucket.grant_read_write(grantee, pattern)
        actions = {**S3_READ_ACTIONS, **S3_WRITE_ACTIONS}
    else:
        bucket.grant_put(grantee, pattern)
        actions = {"s3:Abort*": S3_WRITE_ACTIONS["s3:Abort*"]}
    if bucket.encryption_key is not None:
        actions = {**actions, **KMS_ACTIONS}
    for action, reason in actions.items():
        allowances.allow_action(action, reason)
    allowances.allow_resource(
        bucket.arn_for_objects(pattern),
        f"Objects under the contract's '{prefix}' prefix of this bucket; keys are generated "
        "at run time.",
    )


def has_indexes(table: dynamodb.Table) -> bool:
    """Whether ``table`` has global secondary indexes (as its template will say)."""
    cfn = table.node.default_child
    assert isinstance(cfn, dynamodb.CfnTable)
    return bool(Stack.of(table).resolve(cfn.global_secondary_indexes))


def grant_table(
    table: dynamodb.Table,
    grantee: iam.IGrantable,
    allowances: WildcardAllowances,
    *,
    write: bool,
) -> None:
    """Item access to ``table``; CDK also grants a table with GSIs on ``<table>/index/*``."""
    if write:
        table.grant_read_write_data(grantee)
        for action, reason in KMS_ACTIONS.items():
            allowances.allow_action(action, reason)
    else:
        table.grant_read_data(grantee)
    if has_indexes(table):
        allowances.allow_resource(
            f"{table.table_arn}/index/*",
            "CDK grants a table with global secondary indexes on <table>/index/* as well "
            "(Records' by_dataset, Drops' and ModelVersions' by_month): Queries on them.",
        )


def grant_audit_append(table: dynamodb.Table, grantee: iam.IGrantable) -> None:
    """Append to the audit table and nothing else: ``dynamodb:PutItem`` (no UpdateItem,
    DeleteItem or BatchWriteItem, so no record can be changed or removed), and ``kms:Decrypt``
    on the table's key, which DynamoDB uses for the caller on each request ("How Amazon
    DynamoDB uses AWS KMS")."""
    table.grant(grantee, "dynamodb:PutItem")
    if table.encryption_key is not None:
        table.encryption_key.grant(grantee, "kms:Decrypt")


def grant_base_model_config(function: lambda_.IFunction, base_model: str) -> None:
    """``s3:GetObject`` on the one ``config.json`` of an ``s3://`` base model, which
    PrepareDataset sizes the Train job by (tuneloop/planning/run_check.py); nothing for other
    references and archives, whose config it does not read."""
    location = model_config_location(base_model)
    if location is None:
        return
    bucket, key = location
    partition = Stack.of(function).partition
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[f"arn:{partition}:s3:::{bucket}/{key}"]
        )
    )


def grant_line_components(
    deploy: iam.IGrantable,
    confirm: iam.IGrantable,
    *,
    endpoint_arn: str,
    components: list[str],
) -> None:
    """Deploy creates or re-points a model line's adapter component; ConfirmDeployment reads
    it. Only the lines' own components (named after the lines), never the base.

    CreateInferenceComponent is authorized on the new component and on the endpoint it joins
    (Service Authorization Reference, "Actions defined by Amazon SageMaker AI");
    ``components`` are the lines' component ARNs (``component_endpoint.component_arn``)."""
    for statement in (
        iam.PolicyStatement(
            actions=["sagemaker:CreateInferenceComponent"], resources=[*components, endpoint_arn]
        ),
        iam.PolicyStatement(
            actions=[
                "sagemaker:DescribeInferenceComponent",
                "sagemaker:UpdateInferenceComponent",
            ],
            resources=components,
        ),
    ):
        deploy.grant_principal.add_to_principal_policy(statement)
    confirm.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=["sagemaker:DescribeInferenceComponent"], resources=components)
    )
