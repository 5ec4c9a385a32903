"""AWS's policy evaluation logic within one account, and its access-denied wording."""

from __future__ import annotations

from typing import Any

from iam_fakes import (
    ACCOUNT,
    KEY,
    REGION,
    ROLE,
    ROLE_CALLER,
    ROOT,
    ROOT_CALLER,
    ROOT_KEY_POLICY,
    SESSION,
    SSL_ONLY,
    FakeStore,
    allow,
    call,
    deny,
    document,
    service_caller,
)

from tuneloop.local.iam import authorize, authorize_assume_role
from tuneloop.local.iam.logic import decide

ENDPOINT = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/serving"
CONFIG = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/v2"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms"
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:ingest"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/ingest"
UPDATE = call("sagemaker", "UpdateEndpoint", EndpointName="serving", EndpointConfigName="v2")


def test_no_allow_is_an_implicit_deny_in_aws_words() -> None:
    # Given a role whose policies allow nothing on the endpoint config
    store = FakeStore().grant(allow("sagemaker:UpdateEndpoint", ENDPOINT))

    # When it updates the endpoint
    decisions = authorize(ROLE_CALLER, UPDATE, store)

    # Then the endpoint is allowed, the endpoint config is not, as AWS words it
    assert [(d.resource, d.allowed) for d in decisions] == [(ENDPOINT, True), (CONFIG, False)]
    assert decisions[1].message == (
        f"User: {SESSION} is not authorized to perform: sagemaker:UpdateEndpoint on resource: "
        f"{CONFIG} because no identity-based policy allows the sagemaker:UpdateEndpoint action"
    )
    assert decisions[0].message == ""


def test_an_explicit_deny_wins_over_an_allow() -> None:
    # Given an Allow on everything and a Deny on the endpoint config
    store = FakeStore().grant(allow("sagemaker:*"), deny("sagemaker:UpdateEndpoint", CONFIG))

    # When the role updates the endpoint
    decisions = authorize(ROLE_CALLER, UPDATE, store)

    # Then the deny decides, and the message says so
    assert [d.allowed for d in decisions] == [True, False]
    assert decisions[1].message.endswith("with an explicit deny in an identity-based policy")


def test_the_ssl_only_deny_of_a_resource_policy_binds_even_the_account_root() -> None:
    # Given a topic whose policy denies requests without TLS
    store = FakeStore(resources={TOPIC: document(SSL_ONLY)})
    publish = call("sns", "Publish", TopicArn=TOPIC)
    plain = call("sns", "Publish", secure=False, TopicArn=TOPIC)

    # When the root publishes with and without TLS
    # Then only the TLS request is allowed
    assert [d.allowed for d in authorize(ROOT_CALLER, publish, store)] == [True]
    (denied,) = authorize(ROOT_CALLER, plain, store)
    assert not denied.allowed
    assert denied.message == (
        f"User: {ROOT} is not authorized to perform: sns:Publish on resource: {TOPIC} "
        "with an explicit deny in a resource-based policy"
    )


def test_the_root_is_allowed_without_any_policy() -> None:
    # Given no policies at all, When the account root updates the endpoint, Then AWS allows it
    assert all(d.allowed for d in authorize(ROOT_CALLER, UPDATE, FakeStore()))


def test_a_resource_policy_naming_the_role_allows_without_an_identity_policy() -> None:
    # Given a queue policy that names the role, and no identity policy
    store = FakeStore(
        resources={
            QUEUE: document(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ROLE},
                    "Action": "sqs:*",
                    "Resource": QUEUE,
                }
            )
        }
    )

    # When the role sends, Then the same-account resource policy suffices
    (decision,) = authorize(ROLE_CALLER, call("sqs", "SendMessage", QueueUrl=QUEUE_URL), store)
    assert decision.allowed
    assert decision.grants[0].policy == f"policy/{QUEUE}"


def test_a_resource_policy_naming_only_the_account_delegates_to_identity_policies() -> None:
    # Given a queue policy that names the account, and no identity policy
    named_account = document(
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "sqs:*", "Resource": QUEUE}
    )
    store = FakeStore(resources={QUEUE: named_account})
    send = call("sqs", "SendMessage", QueueUrl=QUEUE_URL)

    # When the role sends, Then it is denied; with an identity policy it is allowed
    assert [d.allowed for d in authorize(ROLE_CALLER, send, store)] == [False]
    store.grant(allow("sqs:SendMessage", QUEUE))
    assert [d.allowed for d in authorize(ROLE_CALLER, send, store)] == [True]


def test_a_kms_key_policy_delegating_to_the_account_needs_an_identity_policy_too() -> None:
    # Given the key's policy allows the account root (the default key policy)
    store = FakeStore(resources={KEY: ROOT_KEY_POLICY})
    decrypt = call("kms", "Decrypt", KeyId=KEY)

    # When the role decrypts without an identity grant, Then the identity policy is missing
    (denied,) = authorize(ROLE_CALLER, decrypt, store)
    assert denied.message.endswith("because no identity-based policy allows the kms:Decrypt action")

    # When the role has the identity grant, Then it is allowed, through both policies
    store.grant(allow("kms:Decrypt", KEY))
    (decision,) = authorize(ROLE_CALLER, decrypt, store)
    assert decision.allowed
    assert {g.policy for g in decision.grants} == {f"policy/{KEY}", "role/DeployRole/policy/P0"}


def test_an_identity_policy_alone_cannot_use_a_kms_key() -> None:
    # Given a key policy that neither names the role nor delegates to the account
    store = FakeStore(resources={KEY: document()}).grant(allow("kms:*"))

    # When the role (even with kms:* on *) or the root decrypts
    (role,) = authorize(ROLE_CALLER, call("kms", "Decrypt", KeyId=KEY), store)
    (root,) = authorize(ROOT_CALLER, call("kms", "Decrypt", KeyId=KEY), store)

    # Then the key policy refuses both
    assert not role.allowed and not root.allowed
    assert role.message.endswith("because no resource-based policy allows the kms:Decrypt action")


def test_a_key_policy_naming_the_role_allows_without_an_identity_policy() -> None:
    # Given a key policy that names the role
    store = FakeStore(
        resources={
            KEY: document(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ROLE},
                    "Action": "kms:Decrypt",
                    "Resource": "*",
                }
            )
        }
    )

    # When the role decrypts, Then it is allowed
    assert [
        d.allowed for d in authorize(ROLE_CALLER, call("kms", "Decrypt", KeyId=KEY), store)
    ] == [True]


def test_service_principals_are_allowed_only_by_resource_policies() -> None:
    # Given a topic policy allowing CloudWatch from this account, and one that allows nothing
    allows_cloudwatch = document(
        {
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": TOPIC,
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:*"},
            },
        }
    )
    alarm = service_caller(
        "cloudwatch.amazonaws.com", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:latency"
    )
    publish = call("sns", "Publish", TopicArn=TOPIC)

    # When the alarm publishes
    allowed = authorize(alarm, publish, FakeStore(resources={TOPIC: allows_cloudwatch}))
    denied = authorize(alarm, publish, FakeStore(resources={TOPIC: document(SSL_ONLY)}))
    other_account = authorize(
        service_caller("cloudwatch.amazonaws.com", "arn:aws:cloudwatch:us-east-1:999:alarm:x"),
        publish,
        FakeStore(resources={TOPIC: allows_cloudwatch}),
    )

    # Then only the topic policy's conditions let it publish
    assert [d.allowed for d in allowed] == [True]
    assert [d.allowed for d in other_account] == [False]
    assert denied[0].message == (
        "User: cloudwatch.amazonaws.com is not authorized to perform: sns:Publish on resource: "
        f"{TOPIC} because no resource-based policy allows the sns:Publish action"
    )


def test_a_service_cannot_use_a_key_through_a_policy_naming_the_account() -> None:
    # Given the topic allows CloudWatch, but the topic's key policy names only the account
    store = FakeStore(
        resources={
            TOPIC: document(
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": TOPIC,
                }
            ),
            KEY: ROOT_KEY_POLICY,
        },
        keys={TOPIC: KEY},
    )
    alarm = service_caller("cloudwatch.amazonaws.com")

    # When the alarm publishes
    decisions = authorize(alarm, call("sns", "Publish", TopicArn=TOPIC), store)

    # Then the key refuses the data key and decryption SNS needs for it
    assert [(d.action, d.allowed) for d in decisions] == [
        ("sns:Publish", True),
        ("kms:GenerateDataKey", False),
        ("kms:Decrypt", False),
    ]


def test_not_action_not_resource_and_not_principal() -> None:
    # Given statements written with the negated elements
    caller = ROLE_CALLER
    everything_but_iam = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    all_but_one_bucket = {
        "Effect": "Allow",
        "Action": "s3:*",
        "NotResource": "arn:aws:s3:::secret/*",
    }
    deny_all_but_role = {
        "Effect": "Deny",
        "NotPrincipal": {"AWS": ROLE},
        "Action": "*",
        "Resource": "*",
    }

    def check(action: str, resource: str, *statements: dict[str, Any]) -> bool:
        return decide(
            caller,
            action,
            resource,
            {},
            identity_policies=[("p", document(*statements))],
            resource_policy=None,
        ).allowed

    # Then each excludes what it names
    assert check("sqs:SendMessage", QUEUE, everything_but_iam)
    assert not check("iam:PassRole", ROLE, everything_but_iam)
    assert check("s3:GetObject", "arn:aws:s3:::public/a", all_but_one_bucket)
    assert not check("s3:GetObject", "arn:aws:s3:::secret/a", all_but_one_bucket)
    kept_out = decide(
        service_caller("events.amazonaws.com"),
        "sqs:SendMessage",
        QUEUE,
        {},
        identity_policies=[],
        resource_policy=("q", document(deny_all_but_role, {**SSL_ONLY, "Effect": "Allow"})),
    )
    assert not kept_out.allowed
    assert kept_out.message.endswith("with an explicit deny in a resource-based policy")


def test_actions_match_case_insensitively_and_resources_case_sensitively() -> None:
    # Given a grant written as the Step Functions integration writes it
    store = FakeStore().grant(allow("sagemaker:describeEndpoint", ENDPOINT))

    # Then DescribeEndpoint matches; the same ARN in another case does not
    describe = call("sagemaker", "DescribeEndpoint", EndpointName="serving")
    assert [d.allowed for d in authorize(ROLE_CALLER, describe, store)] == [True]
    upper = FakeStore().grant(
        allow("sagemaker:DescribeEndpoint", ENDPOINT.replace("serving", "Serving"))
    )
    assert [d.allowed for d in authorize(ROLE_CALLER, describe, upper)] == [False]


def test_the_message_names_no_resource_for_actions_without_resource_types() -> None:
    # Given no grant for cloudwatch:PutMetricData (which has no resource types)
    put = call("cloudwatch", "PutMetricData", Namespace="TuneLoop", MetricData=[])

    # Then the message has no "on resource" part
    (decision,) = authorize(ROLE_CALLER, put, FakeStore())
    assert decision.message == (
        f"User: {SESSION} is not authorized to perform: cloudwatch:PutMetricData because no "
        "identity-based policy allows the cloudwatch:PutMetricData action"
    )


def test_trust_policy_conditions_decide_who_assumes_a_role() -> None:
    # Given a trust policy for SageMaker from this account's training jobs
    trust = document(
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {"aws:SourceArn": f"arn:aws:sagemaker:*:{ACCOUNT}:training-job/*"},
            },
        }
    )
    store = FakeStore(trust={ROLE: trust})
    job = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/t1"

    def assume(service: str, account: str | None, arn: str | None) -> bool:
        return authorize_assume_role(
            ROLE, service, source_account=account, source_arn=arn, store=store
        ).allowed

    # Then only SageMaker, with the account and a training job as source, may assume it
    assert assume("sagemaker.amazonaws.com", ACCOUNT, job)
    assert not assume("sagemaker.amazonaws.com", "999999999999", job)
    assert not assume("sagemaker.amazonaws.com", None, None)
    assert not assume("lambda.amazonaws.com", ACCOUNT, job)
    denied = authorize_assume_role(
        ROLE, "lambda.amazonaws.com", source_account=None, source_arn=None, store=store
    )
    assert denied.message == (
        f"User: lambda.amazonaws.com is not authorized to perform: sts:AssumeRole on resource: "
        f"{ROLE} because no role trust policy allows the sts:AssumeRole action"
    )
