"""The enforcer's wiring into the emulator: who each caller is, what a refusal looks like.

Policy evaluation itself is tested with the evaluator's own tests; here a stand-in
evaluator refuses what a test names, so that each test sees only the wiring: the caller
resolved from the request's access key, the operation and parameters as botocore names
them, AWS's error shape per protocol, and the deliveries the emulator makes in-process.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tuneloop.local.emulator import Emulator
from tuneloop.local.iam import enforce
from tuneloop.local.iam.credentials import CredentialRegistry
from tuneloop.local.iam.model import ApiCall, Caller, Decision, PolicyStore
from tuneloop.local.s3util import download_object

ACCOUNT = "123456789012"


class EmptyStore:
    def identity_policies(self, role_arn: str) -> list[tuple[str, Mapping[str, Any]]]:
        return []

    def trust_policy(self, role_arn: str) -> Mapping[str, Any] | None:
        return None

    def resource_policy(self, resource_arn: str) -> tuple[str, Mapping[str, Any]] | None:
        return None

    def encryption_key(self, resource_arn: str) -> str | None:
        return None


class Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple[Caller, ApiCall]] = []

    def record(self, caller: Caller, call: ApiCall, decisions: Any) -> None:
        self.calls.append((caller, call))

    def of(self, operation: str) -> list[tuple[Caller, ApiCall]]:
        return [(c, call) for c, call in self.calls if call.operation == operation]


class StandIn:
    """Allows everything except what a test refuses: (caller predicate, operation)."""

    def __init__(self) -> None:
        self.refused: list[tuple[Callable[[Caller], bool], str]] = []
        self.untrusted: set[str] = set()

    def authorize(self, caller: Caller, call: ApiCall, store: PolicyStore) -> list[Decision]:
        action = f"{call.service}:{call.operation}"
        for predicate, operation in self.refused:
            if operation == call.operation and predicate(caller):
                message = (
                    f"User: {caller.arn} is not authorized to perform: {action} "
                    "because no identity-based policy allows the action"
                )
                return [Decision(False, action, "*", message, caller=caller.arn)]
        return [Decision(True, action, "*", "", caller=caller.arn)]

    def assume(
        self, role: str, service: str, account: str | None, arn: str | None, store: PolicyStore
    ) -> Decision:
        allowed = role not in self.untrusted
        message = "" if allowed else f"{service} is not authorized to perform: sts:AssumeRole"
        return Decision(allowed, "sts:AssumeRole", role, message)


STAND_IN = StandIn()
RECORDED = Recorded()


def _stand_in_enforcer(registry: CredentialRegistry, enabled: bool, log: Path) -> Any:
    return enforce.Enforcer(
        registry=registry,
        store=EmptyStore(),
        recorder=RECORDED,
        enabled=enabled,
        log_path=log,
        authorize=STAND_IN.authorize,
        authorize_assume_role=STAND_IN.assume,
    )


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(
        tmp_path_factory.mktemp("enforced"),
        alarm_interval_seconds=3600,
        enforce_permissions=True,
        make_enforcer=_stand_in_enforcer,
    ) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _fresh_rules() -> Iterator[None]:
    yield
    STAND_IN.refused.clear()
    STAND_IN.untrusted.clear()


def _role(name: str) -> str:
    iam = boto3.client("iam")
    return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"])


def _session(aws: Emulator, role_arn: str, service: str = "lambda.amazonaws.com") -> Any:
    return aws.enforcer.role_session(role_arn, service)


def _by_role(name: str) -> Callable[[Caller], bool]:
    return lambda caller: caller.role_arn is not None and caller.role_arn.endswith(f"/{name}")


def test_the_operator_is_the_accounts_root(aws: Emulator) -> None:
    # Given the platform's own process, When it calls, Then it is authorized as the root
    boto3.client("sqs").list_queues()
    caller, call = RECORDED.of("ListQueues")[-1]
    assert caller.arn == f"arn:aws:iam::{ACCOUNT}:root" and call.service == "sqs"


@pytest.mark.parametrize(
    ("service", "operation", "request_", "code", "status"),
    [
        (
            "s3",
            "GetObject",
            lambda c: c.get_object(Bucket="enf-bucket", Key="a/b"),
            "AccessDenied",
            403,
        ),
        (
            "dynamodb",
            "PutItem",
            lambda c: c.put_item(TableName="t", Item={"k": {"S": "v"}}),
            "AccessDeniedException",
            400,
        ),
        (
            "sns",
            "Publish",
            lambda c: c.publish(TopicArn=f"arn:aws:sns:us-east-1:{ACCOUNT}:t", Message="m"),
            "AuthorizationError",
            403,
        ),
        (
            "sqs",
            "SendMessage",
            lambda c: c.send_message(QueueUrl=f"https://q/{ACCOUNT}/q", MessageBody="m"),
            "AccessDenied",
            403,
        ),
        ("lambda", "Invoke", lambda c: c.invoke(FunctionName="f"), "AccessDeniedException", 403),
        (
            "sagemaker",
            "UpdateEndpoint",
            lambda c: c.update_endpoint(EndpointName="e", EndpointConfigName="c"),
            "AccessDeniedException",
            400,
        ),
    ],
)
def test_a_refused_call_fails_with_aws_error_for_its_protocol(
    aws: Emulator,
    service: str,
    operation: str,
    request_: Callable[[Any], Any],
    code: str,
    status: int,
) -> None:
    # Given a role whose calls of the operation are refused
    role = _role(f"refused-{service}")
    STAND_IN.refused.append((_by_role(f"refused-{service}"), operation))
    client = _session(aws, role).client(service)
    # When it makes the call
    with pytest.raises(ClientError) as raised:
        request_(client)
    # Then the SDK raises AWS's error code, status and wording, and the denial is logged
    error = raised.value.response["Error"]
    assert error["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["Message"].startswith(
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/refused-{service}/lambda is not authorized"
    )
    assert any(d.operation == f"{service}:{operation}" for d in aws.enforcer.denials)
    logged = (aws.work_dir / "logs" / "denials.jsonl").read_text(encoding="utf-8")
    assert f"refused-{service}" in logged


def test_requests_are_named_as_botocore_names_them(aws: Emulator) -> None:
    # Given an S3 object and a table written by the operator
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="enf-named")
    s3.put_object(Bucket="enf-named", Key="drops/x/a.jsonl", Body=b"{}")
    boto3.client("dynamodb").create_table(
        TableName="enf-table",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # When a role lists the prefix and writes a transaction
    session = _session(aws, _role("named"))
    session.client("s3").list_objects_v2(Bucket="enf-named", Prefix="drops/")
    session.client("dynamodb").transact_write_items(
        TransactItems=[{"Put": {"TableName": "enf-table", "Item": {"k": {"S": "1"}}}}]
    )
    # Then the calls carry botocore's operation and member names
    _, listing = RECORDED.of("ListObjectsV2")[-1]
    assert (listing.service, listing.params["Bucket"], listing.params["Prefix"]) == (
        "s3",
        "enf-named",
        "drops/",
    )
    _, put = RECORDED.of("PutObject")[-1]
    assert put.params["Key"] == "drops/x/a.jsonl"
    caller, write = RECORDED.of("TransactWriteItems")[-1]
    assert write.params["TransactItems"][0]["Put"]["TableName"] == "enf-table"
    assert caller.role_arn == f"arn:aws:iam::{ACCOUNT}:role/named"


def test_an_unknown_access_key_is_refused(aws: Emulator) -> None:
    # Given credentials the platform never issued, When they call, Then AWS's invalid-token error
    client = boto3.client(
        "sqs", aws_access_key_id="AKIAUNKNOWNKEY000000", aws_secret_access_key="x"
    )
    with pytest.raises(ClientError, match="security token included in the request is invalid"):
        client.list_queues()


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


WHO_AM_I = """
import boto3
def handler(event, context):
    return boto3.client("sts").get_caller_identity()["Arn"]
"""


def _function(name: str, role: str) -> str:
    response = boto3.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="who.handler",
        Code={"ZipFile": _zip({"who.py": WHO_AM_I})},
    )
    return str(response["FunctionArn"])


def test_a_function_runs_as_its_execution_role(aws: Emulator) -> None:
    # Given a function with an execution role
    _function("enf-who", _role("who-role"))
    # When it is invoked, Then its code calls AWS as a Lambda session of that role
    response = boto3.client("lambda").invoke(FunctionName="enf-who")
    assert json.loads(response["Payload"].read()) == (
        f"arn:aws:sts::{ACCOUNT}:assumed-role/who-role/lambda"
    )


def test_a_function_whose_role_lambda_cannot_assume_fails(aws: Emulator) -> None:
    # Given a role whose trust policy does not allow Lambda
    role = _role("untrusted-role")
    STAND_IN.untrusted.add(role)
    _function("enf-untrusted", role)
    # When the function is invoked, Then the invocation fails with Lambda's wording
    response = boto3.client("lambda").invoke(FunctionName="enf-untrusted")
    assert response.get("FunctionError")
    payload = json.loads(response["Payload"].read())
    assert "cannot be assumed by Lambda" in payload["errorMessage"]


def test_a_state_machine_task_runs_as_the_state_machines_role(aws: Emulator) -> None:
    # Given a state machine whose role may not publish, and a task that publishes
    topic = boto3.client("sns").create_topic(Name="enf-topic")["TopicArn"]
    role = _role("machine-role")
    STAND_IN.refused.append((_by_role("machine-role"), "Publish"))
    definition = {
        "StartAt": "Notify",
        "States": {
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {"TopicArn": topic, "Message": "done"},
                "End": True,
            }
        },
    }
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="enf-machine", definition=json.dumps(definition), roleArn=role
    )["stateMachineArn"]
    # When it runs
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    deadline = time.monotonic() + 60
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # Then the task fails with AWS's denial, made as the state machine's role
    assert described["status"] == "FAILED"
    assert "assumed-role/machine-role/states is not authorized" in described.get("cause", "")


def test_eventbridge_delivery_to_a_queue_is_authorized_as_events(aws: Emulator) -> None:
    # Given a rule that sends every custom event to a queue
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="enf-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events")
    events.put_rule(Name="enf-rule", EventPattern=json.dumps({"source": ["enf.test"]}))
    events.put_targets(Rule="enf-rule", Targets=[{"Id": "q", "Arn": arn}])
    event: Any = {"Source": "enf.test", "DetailType": "t", "Detail": "{}"}
    # When EventBridge may not send, Then the event is dropped and the drop reported
    STAND_IN.refused.append((lambda c: c.service == "events.amazonaws.com", "SendMessage"))
    events.put_events(Entries=[event])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    caller, call = RECORDED.of("SendMessage")[-1]
    assert caller.service == "events.amazonaws.com"
    assert caller.source_arn == f"arn:aws:events:us-east-1:{ACCOUNT}:rule/enf-rule"
    assert call.params["QueueUrl"].endswith(f"/{ACCOUNT}/enf-events")
    assert any("enf-rule" in d.operation for d in aws.enforcer.denials)
    # When it may, Then the event arrives
    STAND_IN.refused.clear()
    events.put_events(Entries=[event])
    assert sqs.receive_message(QueueUrl=url).get("Messages")


def test_an_alarm_publishes_as_cloudwatch_with_the_alarm_as_source(aws: Emulator) -> None:
    # Given an alarm whose action is a topic with a queue subscribed
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="enf-alarms")["TopicArn"]
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="enf-alarm-queue")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="enf-errors",
        Namespace="Enf",
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0.0,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=[topic],
    )
    cloudwatch.put_metric_data(Namespace="Enf", MetricData=[{"MetricName": "Errors", "Value": 3}])
    # When CloudWatch may not publish to the topic and the alarm fires
    STAND_IN.refused.append((lambda c: c.service == "cloudwatch.amazonaws.com", "Publish"))
    assert aws.alarms.evaluate_once() == ["enf-errors"]
    # Then nothing is delivered, and the refused publish names CloudWatch and the alarm
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    caller, call = RECORDED.of("Publish")[-1]
    assert caller.service == "cloudwatch.amazonaws.com"
    assert caller.source_arn is not None and caller.source_arn.endswith(":alarm:enf-errors")
    assert call.params["TopicArn"] == topic


def test_sns_delivers_to_a_function_as_sns_with_the_topic_as_source(aws: Emulator) -> None:
    # Given a function subscribed to a topic
    function = _function("enf-subscriber", _role("subscriber-role"))
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="enf-deliveries")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=function)
    STAND_IN.refused.append((lambda c: c.service == "sns.amazonaws.com", "Invoke"))
    # When a message is published and SNS may not invoke the function
    sns.publish(TopicArn=topic, Message="hello")
    # Then the delivery is checked as sns.amazonaws.com on the function, and dropped
    caller, call = RECORDED.of("Invoke")[-1]
    assert (caller.service, caller.source_arn) == ("sns.amazonaws.com", topic)
    assert call.params["FunctionName"] == function
    assert any("enf-deliveries" in d.operation for d in aws.enforcer.denials)


def test_a_refused_download_carries_aws_message_not_a_bare_forbidden(
    aws: Emulator, tmp_path: Path
) -> None:
    # Given an object the operator wrote, and a role whose reads of it are refused
    boto3.client("s3").create_bucket(Bucket="enf-downloads")
    boto3.client("s3").put_object(Bucket="enf-downloads", Key="code.tar.gz", Body=b"x")
    role = _role("refused-download")
    for operation in ("GetObject", "HeadObject"):
        STAND_IN.refused.append((_by_role("refused-download"), operation))
    client = _session(aws, role, "sagemaker.amazonaws.com").client("s3")
    # When the local platform downloads it as that role (a job's code, an endpoint's model)
    with pytest.raises(ClientError) as raised:
        download_object(client, "enf-downloads", "code.tar.gz", tmp_path / "code.tar.gz")
    # Then the error is AWS's denial naming the caller, where a HeadObject says only 403
    message = raised.value.response["Error"]["Message"]
    assert "assumed-role/refused-download/sagemaker is not authorized" in message
    with pytest.raises(ClientError) as head:
        client.download_file("enf-downloads", "code.tar.gz", str(tmp_path / "other"))
    assert "not authorized" not in str(head.value)
