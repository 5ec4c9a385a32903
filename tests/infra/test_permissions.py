"""Grants and resource policies as AWS authorizes them (docs/stacks.md, "Permissions").

Each test reads the synthesized templates: identity policies at resource level with their
conditions, trust policies, and the topic, queue and key policies of service publishers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from stacks.nag import flatten_reference
from tests.infra.conftest import Assembly

Statement = dict[str, Any]

# Actions that support no resource-level permission (the Service Authorization Reference
# lists no resource type for them), so "*" is their only possible resource. Anything else
# on "*" is a grant an IAM5 acknowledgment would hide.
UNSCOPED_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",  # limited by the cloudwatch:namespace condition
    "cloudwatch:GetMetricStatistics",  # Deploy reads the outgoing version's quality rates
    "comprehend:DetectPiiEntities",
    "application-autoscaling:DescribeScalableTargets",  # the endpoint's autoscaling
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    # Step Functions' documented policy for SageMaker .sync tasks grants it on "*".
    "sagemaker:ListTags",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_statements(assembly: Assembly, role_logical_id: str) -> list[Statement]:
    """Every statement of the policies attached to one role (its stack only)."""
    found: list[Statement] = []
    for policy in assembly.resources("AWS::IAM::Policy").values():
        roles = policy["Properties"].get("Roles", [])
        if {"Ref": role_logical_id} in roles:
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def _function_role(assembly: Assembly, name: str) -> str:
    (role,) = [
        fn["Properties"]["Role"]["Fn::GetAtt"][0]
        for fn in assembly.resources("AWS::Lambda::Function").values()
        if fn["Properties"]["Handler"] == f"lambdas.{name}.handler.handler"
    ]
    return str(role)


def _state_machine_role(assembly: Assembly) -> str:
    machine = assembly.state_machine("Retrain")
    return str(machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])


def _sagemaker_role(assembly: Assembly) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (key.split("/")[1], role)
        for key, role in assembly.resources("AWS::IAM::Role").items()
        if key.split("/")[1].startswith("SageMakerExecutionRole")
    ]
    return found


def _resources_allowed(statements: Iterable[Statement], action: str) -> list[str]:
    """Rendered resources of every Allow statement naming ``action`` (case-insensitive)."""
    rendered: list[str] = []
    for statement in statements:
        actions = {a.lower() for a in _as_list(statement["Action"])}
        if statement["Effect"] == "Allow" and action.lower() in actions:
            rendered.extend(flatten_reference(r) for r in _as_list(statement["Resource"]))
    return rendered


def _policy_of(assembly: Assembly, resource_type: str, logical_prefix: str) -> list[Statement]:
    (policy,) = [
        resource["Properties"]["PolicyDocument"]["Statement"]
        for key, resource in assembly.resources(resource_type).items()
        if key.split("/")[1].startswith(logical_prefix)
    ]
    return list(policy)


def _key_policy(assembly: Assembly, logical_prefix: str) -> list[Statement]:
    (key,) = [
        resource["Properties"]["KeyPolicy"]["Statement"]
        for name, resource in assembly.resources("AWS::KMS::Key").items()
        if name.split("/")[1].startswith(logical_prefix)
    ]
    return list(key)


def _service_statements(statements: Iterable[Statement], service: str) -> list[Statement]:
    return [
        s
        for s in statements
        if s["Effect"] == "Allow" and service in _as_list(s.get("Principal", {}).get("Service"))
    ]


ACCOUNT = {"Ref": "AWS::AccountId"}


# ---- 1. the state machine publishes to a KMS-encrypted topic -------------------------------


def test_state_machine_role_may_use_the_notify_topic_key(dev: Assembly) -> None:
    # Given the state machine role's policy (Notify, NotifyRejected, NotifyFailure publish
    # to the notify topic, which is encrypted with the Serving stack's topic key)
    statements = _role_statements(dev, _state_machine_role(dev))
    # Then it may publish, and may generate and decrypt data keys with that one key
    assert any(
        "NotificationsNotifyTopic" in r for r in _resources_allowed(statements, "sns:Publish")
    )
    for action in ("kms:GenerateDataKey*", "kms:Decrypt"):
        keys = _resources_allowed(statements, action)
        assert any("NotificationsTopicKey" in r for r in keys), (action, keys)


# ---- 2. service publishers: CloudWatch alarms → topics, EventBridge → queue ----------------


@pytest.mark.parametrize(
    "topic", ["NotificationsNotifyTopicPolicy", "NotificationsAlarmTopicPolicy"]
)
def test_topic_policy_lets_this_accounts_alarms_publish(dev: Assembly, topic: str) -> None:
    # Given a topic policy (it replaces SNS's default policy, so it must name every
    # service that publishes: the DLQ alarm → notify topic, endpoint alarms → alarm topic)
    statements = _policy_of(dev, "AWS::SNS::TopicPolicy", topic)
    # Then CloudWatch may publish on behalf of this account's alarms only
    (allow,) = _service_statements(statements, "cloudwatch.amazonaws.com")
    assert _as_list(allow["Action"]) == ["sns:Publish"]
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    source = flatten_reference(allow["Condition"]["ArnLike"]["aws:SourceArn"])
    assert source == "arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:*"
    # And the SSL-only Deny is still there
    assert any(s["Effect"] == "Deny" for s in statements)


def test_topic_key_lets_this_accounts_alarms_encrypt(dev: Assembly) -> None:
    (allow,) = _service_statements(
        _key_policy(dev, "NotificationsTopicKey"), "cloudwatch.amazonaws.com"
    )
    assert set(_as_list(allow["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    source = flatten_reference(allow["Condition"]["ArnLike"]["aws:SourceArn"])
    assert source.endswith(":cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:*")


def test_event_bridge_may_deliver_drop_events_to_the_encrypted_queue(dev: Assembly) -> None:
    # Given the ingest queue's policy and its key's policy
    (queue_allow,) = _service_statements(
        _policy_of(dev, "AWS::SQS::QueuePolicy", "IngestQueuePolicy"), "events.amazonaws.com"
    )
    (key_allow,) = _service_statements(
        _key_policy(dev, "IngestQueueQueueKey"), "events.amazonaws.com"
    )
    # Then EventBridge may send (for this account's rules) and use the queue's key
    assert "sqs:SendMessage" in _as_list(queue_allow["Action"])
    assert queue_allow["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= set(_as_list(key_allow["Action"]))
    # As CDK writes it for an encrypted queue: the account, on the key as on the queue.
    assert key_allow["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


# ---- 3. Deploy and Rollback: every resource SageMaker authorizes ---------------------------


def test_deploy_may_create_and_update_the_endpoint_with_a_new_config(dev: Assembly) -> None:
    statements = _role_statements(dev, _function_role(dev, "deploy"))
    for action in ("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"):
        resources = _resources_allowed(statements, action)
        assert any(":endpoint/tuneloopdevserving-endpoint-" in r for r in resources), action
        assert any(r.endswith(":endpoint-config/*") for r in resources), (action, resources)
    assert any(
        r.endswith(":model/*") for r in _resources_allowed(statements, "sagemaker:CreateModel")
    )
    configs = _resources_allowed(statements, "sagemaker:CreateEndpointConfig")
    assert any(r.endswith(":endpoint-config/*") for r in configs)
    # Deploy reads the package Register created (what the gate approved)
    packages = _resources_allowed(statements, "sagemaker:DescribeModelPackage")
    assert any(":model-package/tuneloopdevpipeline-modelregistry-" in r for r in packages)


def test_rollback_may_update_the_endpoint_to_any_earlier_config(dev: Assembly) -> None:
    statements = _role_statements(dev, _function_role(dev, "rollback"))
    resources = _resources_allowed(statements, "sagemaker:UpdateEndpoint")
    assert any(":endpoint/tuneloopdevserving-endpoint-" in r for r in resources)
    assert any(r.endswith(":endpoint-config/*") for r in resources)


# ---- 4, 5, 10. the SageMaker execution role -----------------------------------------------


def test_sagemaker_role_may_describe_the_rollback_alarms(dev: Assembly) -> None:
    logical_id, _ = _sagemaker_role(dev)
    alarms = _resources_allowed(_role_statements(dev, logical_id), "cloudwatch:DescribeAlarms")
    assert len(alarms) == 5, alarms  # 5XX, latency and the three quality alarms
    assert all("EndpointAlarms" in a for a in alarms), alarms


def test_sagemaker_role_reads_only_the_prefixes_its_jobs_read(dev: Assembly) -> None:
    logical_id, _ = _sagemaker_role(dev)
    statements = _role_statements(dev, logical_id)
    for action in ("s3:GetObject", "s3:ListBucket", "s3:GetObject*", "s3:List*"):
        assert "*" not in _resources_allowed(statements, action), action
    objects = [
        r
        for s in statements
        if any(a.startswith("s3:Get") for a in _as_list(s["Action"]))
        for r in map(flatten_reference, _as_list(s["Resource"]))
        if "/" in r
    ]
    prefixes = {r.rsplit("/", 2)[-2] for r in objects if r.endswith("/*")}
    assert prefixes == {"datasets", "jobs", "checkpoints", "benchmarks", "runs"}, objects


def test_sagemaker_role_trusts_sagemaker_only_for_this_accounts_resources(dev: Assembly) -> None:
    # Given the SageMaker role's trust policy
    _, role = _sagemaker_role(dev)
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    # Then SageMaker may assume it only for this account's and region's resources, in the
    # form SageMaker presents for inference (arn:...:sagemaker:<region>:<account>:*), which
    # also holds the training and processing job ARNs
    (source,) = statement["Condition"]["ArnLike"].values()
    assert list(statement["Condition"]["ArnLike"]) == ["aws:SourceArn"]
    rendered = flatten_reference(source)
    assert rendered == "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:*"
    assert list(statement["Condition"]) == ["ArnLike"]


# ---- 6. PassRole ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "local"])
def test_every_pass_role_names_the_service_it_passes_to(
    stage: str, request: pytest.FixtureRequest
) -> None:
    assembly: Assembly = request.getfixturevalue(stage)
    passes = [
        statement
        for policy in assembly.resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "iam:PassRole" in _as_list(statement["Action"])
    ]
    assert len(passes) >= 2  # Deploy and the state machine
    for statement in passes:
        assert statement["Condition"] == {
            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
        }


# ---- 5. what "*" and the IAM5 acknowledgments can hide ------------------------------------


@pytest.mark.parametrize("stage", ["dev", "local"])
def test_statements_on_any_resource_hold_only_actions_without_resource_types(
    stage: str, request: pytest.FixtureRequest
) -> None:
    # An AwsSolutions-IAM5[Resource::*] acknowledgment covers the whole policy's "*"
    # statements, so an action merged into one (s3:GetObject added by a task) hides there.
    assembly: Assembly = request.getfixturevalue(stage)
    for name, policy in assembly.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow" and "*" in _as_list(statement["Resource"]):
                extra = set(_as_list(statement["Action"])) - UNSCOPED_ACTIONS
                assert not extra, f"{name}: {sorted(extra)} on '*'"


def test_one_acknowledgment_carries_the_reason_of_every_grant_it_covers() -> None:
    # Given two grants on "*" in one role (X-Ray, and a redactor's Comprehend call)
    from aws_cdk import App, Stack
    from aws_cdk import aws_iam as iam

    from stacks.nag import WildcardAllowances

    stack = Stack(App(), "Probe")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    allow = WildcardAllowances(role)
    allow.allow_resource("*", "X-Ray has no resource-level permissions.")
    allow.allow_resource("*", "comprehend:DetectPiiEntities supports no resource ARN")
    allow.allow_resource("*", "X-Ray has no resource-level permissions.")
    # When the finding is acknowledged (recorded in the role's construct metadata),
    # then its reason names both grants, once each
    allow.acknowledge_resolved()
    reasons = [str(entry.data) for entry in role.node.metadata if "IAM5" in str(entry.data)]
    assert any(
        "X-Ray has no resource-level permissions. | comprehend:DetectPiiEntities" in r
        for r in reasons
    ), reasons


def test_an_s3_base_model_is_readable_by_the_jobs_and_nothing_beside_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Given a stage whose base model is an s3:// prefix (no longer covered by a read on "*")
    from tests.infra.conftest import synthesize

    assembly = synthesize(
        "dev", tmp_path_factory.mktemp("cdk-s3-base"), base_model="s3://models-bucket/base/"
    )
    logical_id, _ = _sagemaker_role(assembly)
    statements = _role_statements(assembly, logical_id)
    # Then the SageMaker role reads that prefix, and lists the bucket only under it
    assert "arn:<AWS::Partition>:s3:::models-bucket/base/*" in _resources_allowed(
        statements, "s3:GetObject"
    )
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert flatten_reference(listing["Resource"]) == "arn:<AWS::Partition>:s3:::models-bucket"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["base/*"]}}
    # And PrepareDataset reads its config.json (to size Train) and no other object there
    prepare = _role_statements(assembly, _function_role(assembly, "prepare_dataset"))
    model_reads = [
        resource
        for resource in _resources_allowed(prepare, "s3:GetObject")
        if "models-bucket" in resource
    ]
    assert model_reads == ["arn:<AWS::Partition>:s3:::models-bucket/base/config.json"]
    # The local platform's enforcer (AWS's evaluation) allows that one read and no other
    from tests.unit.iam_fakes import ROLE_CALLER, FakeStore, call
    from tuneloop.local.iam import allowed, authorize

    rendered = model_reads[0].replace("<AWS::Partition>", "aws")
    store = FakeStore().grant({"Effect": "Allow", "Action": "s3:GetObject", "Resource": rendered})
    for key, expected in (("base/config.json", True), ("base/model.safetensors", False)):
        request = call("s3", "GetObject", Bucket="models-bucket", Key=key)
        assert allowed(authorize(ROLE_CALLER, request, store)) is expected, key
    assert not [
        s for s in prepare if "models-bucket" in json.dumps(s) and s["Action"] != "s3:GetObject"
    ]
