"""MotoPolicyStore reads the policies a CloudFormation stack deployed into moto."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.integration.aws_fixtures import ACCOUNT, REGION, aws_credentials
from tuneloop.local import cfn_models
from tuneloop.local.iam import ApiCall, Caller, authorize
from tuneloop.local.iam.moto_store import MotoPolicyStore

__all__ = ["aws_credentials"]

ROLE = f"arn:aws:iam::{ACCOUNT}:role/worker"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/worker/s1"
SSL_ONLY = {
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": "*",
    "Resource": "*",
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


def _template(code_bucket: str) -> dict[str, Any]:
    def allow(actions: list[str], resource: Any) -> dict[str, Any]:
        return {"Effect": "Allow", "Action": actions, "Resource": resource}

    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    return {
        "Resources": {
            "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": key_policy}},
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketName": "store-bucket",
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {
                                "ServerSideEncryptionByDefault": {
                                    "SSEAlgorithm": "aws:kms",
                                    "KMSMasterKeyID": {"Fn::GetAtt": ["Key", "Arn"]},
                                }
                            }
                        ]
                    },
                },
            },
            "BucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": {"Ref": "Bucket"},
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": [SSL_ONLY]},
                },
            },
            "Topic": {
                "Type": "AWS::SNS::Topic",
                "Properties": {"KmsMasterKeyId": {"Fn::GetAtt": ["Key", "Arn"]}},
            },
            "TopicPolicy": {
                "Type": "AWS::SNS::TopicPolicy",
                "Properties": {
                    "Topics": [{"Ref": "Topic"}],
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": [SSL_ONLY]},
                },
            },
            "Queue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {"KmsMasterKeyId": {"Fn::GetAtt": ["Key", "Arn"]}},
            },
            "QueuePolicy": {
                "Type": "AWS::SQS::QueuePolicy",
                "Properties": {
                    "Queues": [{"Ref": "Queue"}],
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Action": "sqs:SendMessage",
                                "Resource": {"Fn::GetAtt": ["Queue", "Arn"]},
                            }
                        ],
                    },
                },
            },
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": "store-table",
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "SSESpecification": {
                        "SSEEnabled": True,
                        "SSEType": "KMS",
                        "KMSMasterKeyId": {"Fn::GetAtt": ["Key", "Arn"]},
                    },
                },
            },
            "Managed": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [allow(["sqs:SendMessage"], {"Fn::GetAtt": ["Queue", "Arn"]})],
                    }
                },
            },
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": "worker",
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "lambda.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    },
                },
            },
            "Inline": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyName": "WorkerDefault",
                    "Roles": [{"Ref": "Role"}],
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [allow(["sns:Publish"], {"Ref": "Topic"})],
                    },
                },
            },
            "Function": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "FunctionName": "store-function",
                    "Runtime": "python3.11",
                    "Handler": "index.handler",
                    "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                    "Code": {"S3Bucket": code_bucket, "S3Key": "code.zip"},
                },
            },
            "Permission": {
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "Action": "lambda:InvokeFunction",
                    "FunctionName": {"Fn::GetAtt": ["Function", "Arn"]},
                    "Principal": "sns.amazonaws.com",
                    "SourceArn": {"Ref": "Topic"},
                },
            },
        },
        "Outputs": {
            "KeyArn": {"Value": {"Fn::GetAtt": ["Key", "Arn"]}},
            "ManagedArn": {"Value": {"Ref": "Managed"}},
            "TopicArn": {"Value": {"Ref": "Topic"}},
            "QueueArn": {"Value": {"Fn::GetAtt": ["Queue", "Arn"]}},
            "FunctionArn": {"Value": {"Fn::GetAtt": ["Function", "Arn"]}},
        },
    }


@pytest.fixture
def deployed(aws_credentials: None) -> Iterator[dict[str, str]]:
    with mock_aws():
        cfn_models.register()
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="code")
        s3.put_object(Bucket="code", Key="code.zip", Body=_zip())
        cfn = boto3.client("cloudformation", region_name=REGION)
        cfn.create_stack(StackName="store", TemplateBody=json.dumps(_template("code")))
        stack = cfn.describe_stacks(StackName="store")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        # moto's AWS::IAM::Role ignores ManagedPolicyArns: attach through the API.
        boto3.client("iam").attach_role_policy(RoleName="worker", PolicyArn=outputs["ManagedArn"])
        yield outputs


def test_store_reads_inline_and_managed_policies_and_the_trust_policy(
    deployed: dict[str, str],
) -> None:
    # Given a role with an inline policy (AWS::IAM::Policy) and an attached managed policy
    store = MotoPolicyStore()

    # When the store is asked for the role's policies
    policies = dict(store.identity_policies(ROLE))
    trust = store.trust_policy(ROLE)

    # Then both documents are there, named by where they live, and the trust policy too
    assert policies["role/worker/policy/WorkerDefault"]["Statement"][0]["Action"] == ["sns:Publish"]
    (managed,) = [doc for pid, doc in policies.items() if pid.startswith("role/worker/managed/")]
    assert managed["Statement"][0]["Resource"] == deployed["QueueArn"]
    assert trust is not None
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}


def test_store_reads_the_deployed_bucket_topic_queue_key_and_function_policies(
    deployed: dict[str, str],
) -> None:
    # Given the stack's resource policies (moto's CloudFormation skips three of the types)
    store = MotoPolicyStore()

    # When each resource's policy is read
    bucket = store.resource_policy("arn:aws:s3:::store-bucket/some/key")
    topic = store.resource_policy(deployed["TopicArn"])
    queue = store.resource_policy(deployed["QueueArn"])
    key = store.resource_policy(deployed["KeyArn"])
    function = store.resource_policy(deployed["FunctionArn"])

    # Then each is the template's document: the topic's replaces SNS's default policy
    assert bucket is not None and bucket[0] == "bucket-policy/arn:aws:s3:::store-bucket"
    assert bucket[1]["Statement"] == [SSL_ONLY]
    assert topic is not None and topic[1]["Statement"] == [SSL_ONLY]
    assert queue is not None
    assert queue[1]["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    assert key is not None and key[1]["Statement"][0]["Action"] == "kms:*"
    assert function is not None
    (statement,) = function[1]["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == deployed["TopicArn"]


def test_store_finds_the_customer_managed_key_of_each_encrypted_resource(
    deployed: dict[str, str],
) -> None:
    # Given a bucket, topic, queue and table encrypted with the stack's key
    store = MotoPolicyStore()
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/store-table"

    # When the store is asked for their keys
    keys = {
        arn: store.encryption_key(arn)
        for arn in ("arn:aws:s3:::store-bucket", deployed["TopicArn"], deployed["QueueArn"], table)
    }

    # Then each is the key's ARN
    assert set(keys.values()) == {deployed["KeyArn"]}


def test_a_role_without_a_kms_grant_cannot_publish_to_the_encrypted_topic(
    deployed: dict[str, str],
) -> None:
    # Given the role may publish to the topic, but has no grant on the topic's key
    caller = Caller(arn=SESSION, account=ACCOUNT, role_arn=ROLE)
    call = ApiCall("sns", "Publish", {"TopicArn": deployed["TopicArn"]}, REGION, ACCOUNT)

    # When it publishes
    decisions = authorize(caller, call, MotoPolicyStore())

    # Then sns:Publish is allowed, and the key use SNS makes for it is denied
    assert [(d.action, d.allowed) for d in decisions] == [
        ("sns:Publish", True),
        ("kms:GenerateDataKey", False),
        ("kms:Decrypt", False),
    ]
    assert decisions[1].message == (
        f"User: {SESSION} is not authorized to perform: kms:GenerateDataKey on resource: "
        f"{deployed['KeyArn']} because no identity-based policy allows the "
        "kms:GenerateDataKey action"
    )


def test_sns_may_invoke_the_function_only_from_the_permitted_topic(
    deployed: dict[str, str],
) -> None:
    # Given the function's policy allows sns.amazonaws.com from the stack's topic
    store = MotoPolicyStore()
    call = ApiCall("lambda", "Invoke", {"FunctionName": "store-function"}, REGION, ACCOUNT)

    def delivery(source_arn: str) -> Caller:
        return Caller(
            arn="sns.amazonaws.com",
            account=ACCOUNT,
            service="sns.amazonaws.com",
            source_arn=source_arn,
            source_account=ACCOUNT,
        )

    # When SNS delivers from that topic, and from another
    from_topic = authorize(delivery(deployed["TopicArn"]), call, store)
    from_other = authorize(delivery(deployed["TopicArn"] + "-other"), call, store)

    # Then only the first is allowed
    assert [d.allowed for d in from_topic] == [True]
    assert [d.allowed for d in from_other] == [False]
    assert from_other[0].message.endswith(
        "because no resource-based policy allows the lambda:InvokeFunction action"
    )


def test_a_deployed_bucket_policy_leaves_moto_serving_objects(deployed: dict[str, str]) -> None:
    # Given the bucket's SSL-only policy was deployed (moto's own S3 check would refuse
    # every object request under it)
    s3 = boto3.client("s3", region_name=REGION)

    # When an object is written and read
    s3.put_object(Bucket="store-bucket", Key="a.txt", Body=b"x")

    # Then moto serves it; the policy is there for the enforcement, and the role is listed
    assert s3.get_object(Bucket="store-bucket", Key="a.txt")["Body"].read() == b"x"
    assert MotoPolicyStore().resource_policy("arn:aws:s3:::store-bucket") is not None
    assert ROLE in MotoPolicyStore().role_arns()
