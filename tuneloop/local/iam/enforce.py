"""The enforcer: every request the emulator serves is authorized as AWS would authorize it.

moto calls ``ActionAuthenticatorMixin._authenticate_and_authorize_action`` for every request
of every service it serves (``BaseResponse.call_action`` for all protocols, S3's own request
path for S3) once the request is parsed, before the action runs. That one hook resolves the
request's ``Caller`` from its SigV4 access key id (``credentials``), builds the ``ApiCall``
with the operation's input members as botocore names them (moto's own request parsers,
driven by the botocore service model), asks ``authorize`` for every authorization AWS
makes, records each decision, and on denial answers with AWS's error for the protocol.

Deliveries the emulator makes in-process on a service's behalf (EventBridge → SQS,
SNS → Lambda or SQS, SQS → Lambda polling) never reach the HTTP hook; ``install`` wraps the
moto methods that make them, so they are authorized as the service principal (or the
function's execution role) and dropped, as AWS drops them, when denied.
"""

from __future__ import annotations

import datetime
import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from xml.sax.saxutils import escape

from tuneloop.local.iam.credentials import (
    INTERNAL,
    AssumeRoleDeniedError,
    CredentialRegistry,
    Credentials,
)
from tuneloop.local.iam.model import ApiCall, Caller, Decision, PolicyStore

Authorize = Callable[[Caller, ApiCall, PolicyStore], list[Decision]]
# (role ARN, service principal, source account, source ARN, store) → the trust decision
AuthorizeAssumeRole = Callable[[str, str, str | None, str | None, PolicyStore], Decision]

# AWS's error code and HTTP status for a denied request, per service (botocore names);
# services not listed answer AccessDeniedException with 400, as most JSON services do.
_DENIAL: dict[str, tuple[str, int]] = {
    "s3": ("AccessDenied", 403),
    "sns": ("AuthorizationError", 403),
    "sqs": ("AccessDenied", 403),
    "sts": ("AccessDenied", 403),
    "iam": ("AccessDenied", 403),
    "cloudformation": ("AccessDenied", 403),
    "cloudwatch": ("AccessDenied", 403),
    "lambda": ("AccessDeniedException", 403),
    "sagemaker-runtime": ("AccessDeniedException", 403),
}
_DEFAULT_DENIAL = ("AccessDeniedException", 400)


class UsageRecorder(Protocol):
    def record(self, caller: Caller, call: ApiCall, decisions: Sequence[Decision]) -> None: ...


@dataclass(frozen=True)
class Denial:
    """One refused request or delivery, as a person reads it."""

    when: str
    caller: str
    operation: str  # "sagemaker:UpdateEndpoint", or "delivery rule R → sqs:SendMessage"
    message: str


def _policy_authorize() -> Authorize:
    from tuneloop.local.iam.evaluate import authorize

    return authorize


def _policy_authorize_assume_role() -> AuthorizeAssumeRole:
    from tuneloop.local.iam.evaluate import authorize_assume_role

    def check(
        role_arn: str,
        service: str,
        source_account: str | None,
        source_arn: str | None,
        store: PolicyStore,
    ) -> Decision:
        return authorize_assume_role(
            role_arn, service, source_account=source_account, source_arn=source_arn, store=store
        )

    return check


@dataclass
class Enforcer:
    """Decides every request; ``enabled=False`` decides and records but refuses nothing."""

    registry: CredentialRegistry
    store: PolicyStore
    recorder: UsageRecorder | None = None
    enabled: bool = True
    log_path: Path | None = None
    on_denied: Callable[[Denial], None] | None = None
    authorize: Authorize = field(default_factory=_policy_authorize)
    authorize_assume_role: AuthorizeAssumeRole = field(
        default_factory=_policy_authorize_assume_role
    )
    denials: list[Denial] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refusal(self, caller: Caller, call: ApiCall) -> Decision | None:
        """Authorize and record ``call``; the first refusal, None when all are allowed."""
        decisions = list(self.authorize(caller, call, self.store))
        if self.recorder is not None:
            self.recorder.record(caller, call, decisions)
        return next((d for d in decisions if not d.allowed), None)

    def decide(self, caller: Caller, call: ApiCall) -> Decision | None:
        """Authorize a request; the refusal to answer with (None when allowed or not enforced)."""
        refused = self.refusal(caller, call)
        if refused is None:
            return None
        self.report(caller.arn, f"{call.service}:{call.operation}", refused.message)
        return refused if self.enabled else None

    def report(self, caller: str, operation: str, message: str) -> None:
        """Make a refusal visible: the denials log, the platform's output, ``denials``."""
        denial = Denial(
            when=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            caller=caller,
            operation=operation,
            message=message if self.enabled else f"(not enforced) {message}",
        )
        with self._lock:
            self.denials.append(denial)
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.log_path, "a", encoding="utf-8") as out:
                    out.write(json.dumps(denial.__dict__) + "\n")
        if self.on_denied is not None:
            self.on_denied(denial)

    def role_session(
        self, role_arn: str, service: str, source_arn: str | None = None
    ) -> Credentials:
        """Credentials of ``role_arn`` assumed by ``service``; its trust policy decides."""

        def trust(role: str, principal: str, account: str, arn: str | None) -> Decision:
            decision = self.authorize_assume_role(role, principal, account, arn, self.store)
            if not decision.allowed:
                self.report(principal, "sts:AssumeRole", decision.message)
            return decision

        return self.registry.assume_role(
            role_arn, service, trust, source_arn=source_arn, enforce=self.enabled
        )


# -- the request hook ----------------------------------------------------------------

_active: Enforcer | None = None
_patched = False
_patch_lock = threading.Lock()


def install(enforcer: Enforcer) -> None:
    """Route every request and delivery through ``enforcer`` (idempotent patching)."""
    global _active, _patched
    with _patch_lock:
        _active = enforcer
        if not _patched:
            _patched = True
            _patch_request_hook()
            _patch_eventbridge_to_sqs()
            _patch_sns_deliveries()
            _patch_sqs_to_lambda()
            _patch_state_machine_credentials()


def uninstall() -> None:
    global _active
    with _patch_lock:
        _active = None


def active() -> Enforcer | None:
    return _active


class AccessDeniedError(Exception):
    """A refused request, answered in the error shape of its protocol."""

    def __init__(self, service: str, protocol: str, message: str) -> None:
        super().__init__(message)
        self.error_code, self.status = _DENIAL.get(service, _DEFAULT_DENIAL)
        self.protocol = protocol
        self.message = message

    def response(self) -> tuple[int, dict[str, str], str]:
        if self.protocol in {"json", "rest-json"}:
            body = json.dumps({"__type": self.error_code, "message": self.message})
            headers = {
                "Content-Type": "application/x-amz-json-1.1",
                "x-amzn-ErrorType": self.error_code,
                # JSON services that were query services once report the query error code.
                "x-amzn-query-error": f"{self.error_code};Sender",
            }
            return self.status, headers, body
        body = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{self.error_code}</Code><Message>{escape(self.message)}</Message>"
            "</Error><RequestId>local</RequestId></ErrorResponse>"
        )
        return self.status, {"Content-Type": "text/xml"}, body


class InvalidTokenError(AccessDeniedError):
    def __init__(self, service: str, protocol: str) -> None:
        super().__init__(
            service, protocol, "The security token included in the request is invalid."
        )
        self.error_code = (
            "InvalidClientTokenId" if protocol == "query" else "UnrecognizedClientException"
        )
        self.status = 403


@functools.cache
def _router(service: str) -> Any:
    from moto.core.routing import get_service_router

    return get_service_router(service)


def _access_key(response: Any) -> str | None:
    authorization = response.headers.get("Authorization", "")
    if "Credential=" in authorization:
        return str(authorization.split("Credential=", 1)[1].split("/", 1)[0]).strip()
    credential = response.normalized_request.args.get("X-Amz-Credential")  # presigned URL
    if credential:
        return str(credential.split("/", 1)[0])
    return None


def api_call_of(response: Any) -> ApiCall:
    """The request moto is serving, as botocore names its operation and input members."""
    from moto.core.parse import PROTOCOL_PARSERS
    from moto.core.request import determine_request_protocol
    from moto.core.utils import get_service_model

    service = response.boto3_service_name
    request = response.normalized_request
    model = get_service_model(service)
    protocol = determine_request_protocol(model, request.content_type)
    uri_params: dict[str, Any] = {}
    if protocol.startswith("rest"):
        operation_model, uri_params = _router(service).match(request)
        operation = str(operation_model.name)
    else:
        operation = str(response._get_action())
        operation_model = model.operation_model(operation)
    parser = PROTOCOL_PARSERS[protocol](operation_model)
    params = parser.parse(
        {
            "method": request.method,
            "values": request.values,
            "headers": request.headers,
            "body": request.data,
            "url_path": request.path,
            "url_params": uri_params,
        }
    )
    return ApiCall(
        service=service,
        operation=operation,
        params=_plain(params),
        region=response.region,
        account=response.current_account,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _protocol_of(response: Any) -> str:
    from moto.core.request import determine_request_protocol
    from moto.core.utils import get_service_model

    model = get_service_model(response.boto3_service_name)
    try:
        return determine_request_protocol(model, response.normalized_request.content_type)
    except NotImplementedError:
        return str(model.protocol)


def authorize_request(response: Any) -> None:
    """Decide the request ``response`` serves; raise ``AccessDeniedError`` when refused."""
    enforcer = _active
    if enforcer is None or getattr(response, "_tuneloop_decided", False):
        return
    response._tuneloop_decided = True  # S3 asks once per step of its own routing
    service = response.boto3_service_name
    key = _access_key(response)
    caller = enforcer.registry.resolve(key) if key else None
    if caller is INTERNAL:
        return
    if caller is None:
        if enforcer.enabled:
            raise InvalidTokenError(service, _protocol_of(response))
        return
    try:
        call = api_call_of(response)
    except Exception as exc:  # decide on what moto parsed itself rather than fail the call
        print(f"[local] request not parsed for authorization ({exc!r}); moto's view used")
        call = ApiCall(
            service=service,
            operation=str(response._get_action() or ""),
            params={k: v[0] if isinstance(v, list) else v for k, v in response.querystring.items()}
            | dict(response.uri_match or {}),
            region=response.region,
            account=response.current_account,
        )
    refused = enforcer.decide(caller, call)
    if refused is not None:
        raise AccessDeniedError(service, _protocol_of(response), refused.message)


def _patch_request_hook() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.responses import BaseResponse
    from moto.s3.exceptions import S3ClientError
    from moto.s3.responses import S3Response

    original_hook = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def hook(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if _active is None:
            return original_hook(self, iam_request_cls, resource)
        try:
            authorize_request(self)
        except AccessDeniedError as denied:
            if self.boto3_service_name != "s3":
                raise
            if isinstance(denied, InvalidTokenError):
                message = "The AWS Access Key Id you provided does not exist in our records."
                raise S3ClientError("InvalidAccessKeyId", message) from None
            raise S3ClientError("AccessDenied", denied.message) from None
        return None

    ActionAuthenticatorMixin._authenticate_and_authorize_action = hook  # type: ignore[method-assign]

    original_call_action = BaseResponse.call_action

    def call_action(self: Any) -> Any:
        try:
            return original_call_action(self)
        except AccessDeniedError as denied:
            status, headers, body = denied.response()
            return status, {**self.response_headers, **headers, "status": str(status)}, body

    BaseResponse.call_action = call_action  # type: ignore[method-assign]
    # S3 serializes S3ClientError itself; AWS answers an S3 denial with 403.
    original_serialized = S3Response.serialized

    def serialized(self: Any, action_result: Any) -> Any:
        status, headers, body = original_serialized(self, action_result)
        error = action_result.result
        refused = isinstance(error, S3ClientError) and error.code in {
            "AccessDenied",
            "InvalidAccessKeyId",
        }
        if _active is not None and refused:
            status = 403
        return status, headers, body

    S3Response.serialized = serialized  # type: ignore[method-assign]


# -- deliveries ----------------------------------------------------------------------


def _queue_url(account: str, region: str, name: str) -> str:
    return f"https://sqs.{region}.amazonaws.com/{account}/{name}"


def _deliver(caller: Caller, call: ApiCall, what: str) -> bool:
    """Authorize a delivery; report and answer False when refused."""
    enforcer = _active
    if enforcer is None:
        return True
    refused = enforcer.refusal(caller, call)
    if refused is None:
        return True
    enforcer.report(caller.arn, what, f"delivery dropped: {refused.message}")
    return not enforcer.enabled


def _service_caller(service: str, source_arn: str, account: str) -> Caller:
    return Caller(
        arn=service,
        account=account,
        service=service,
        source_arn=source_arn,
        source_account=account,
    )


# EventBridge delivers a rule's event to an SQS target as events.amazonaws.com: the queue's
# policy (and its KMS key's) must allow it, aws:SourceArn being the rule.
def _patch_eventbridge_to_sqs() -> None:
    from moto.events.models import Rule

    original = Rule._send_to_sqs_queue

    def send_to_sqs_queue(
        self: Any, resource_id: str, event: dict[str, Any], group_id: str | None = None
    ) -> None:
        if _active is not None:
            caller = _service_caller("events.amazonaws.com", self.arn, self.account_id)
            call = ApiCall(
                service="sqs",
                operation="SendMessage",
                params={
                    "QueueUrl": _queue_url(self.account_id, self.region_name, resource_id),
                    "MessageBody": "(event)",
                },
                region=self.region_name,
                account=self.account_id,
            )
            if not _deliver(caller, call, f"delivery rule {self.name} → sqs:SendMessage"):
                return
        original(self, resource_id, event, group_id)

    Rule._send_to_sqs_queue = send_to_sqs_queue  # type: ignore[method-assign]


# SNS delivers to a Lambda subscription as sns.amazonaws.com (the function's resource policy
# must allow lambda:InvokeFunction from the topic) and to an SQS subscription the same way
# (the queue's policy).
def _patch_sns_deliveries() -> None:
    from moto.sns.models import Subscription

    original = Subscription.publish

    def publish(self: Any, message: str, message_id: str, *args: Any, **kwargs: Any) -> None:
        if _active is not None and self.protocol in {"lambda", "sqs"}:
            topic = self.topic
            account = topic.account_id
            region = topic.arn.split(":")[3]
            caller = _service_caller("sns.amazonaws.com", topic.arn, account)
            if self.protocol == "lambda":
                call = ApiCall("lambda", "Invoke", {"FunctionName": self.endpoint}, region, account)
            else:
                name = self.endpoint.rsplit(":", 1)[-1]
                call = ApiCall(
                    "sqs",
                    "SendMessage",
                    {"QueueUrl": _queue_url(account, region, name), "MessageBody": "(message)"},
                    region,
                    account,
                )
            what = f"delivery topic {topic.name} → {call.service}:{call.operation}"
            if not _deliver(caller, call, what):
                return
        original(self, message, message_id, *args, **kwargs)

    Subscription.publish = publish  # type: ignore[method-assign]


# Lambda polls an SQS event source with the function's execution role: it needs
# sqs:ReceiveMessage, sqs:DeleteMessage, sqs:GetQueueAttributes (and the queue key).
def _patch_sqs_to_lambda() -> None:
    from moto.awslambda.models import LambdaBackend

    original = LambdaBackend.send_sqs_batch

    def send_sqs_batch(self: Any, function_arn: str, messages: Any, queue_arn: str) -> bool:
        enforcer = _active
        if enforcer is not None:
            function = self.get_function(function_arn)
            _, _, _, region, account, name = queue_arn.split(":", 5)
            try:
                credentials = enforcer.role_session(
                    function.role, "lambda.amazonaws.com", function.function_arn
                )
            except AssumeRoleDeniedError:
                return False  # reported by the trust check
            caller = enforcer.registry.resolve(credentials.access_key_id)
            assert caller is not None
            url = _queue_url(account, region, name)
            for operation, params in (
                ("ReceiveMessage", {"QueueUrl": url}),
                ("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": "(handle)"}),
                ("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]}),
            ):
                call = ApiCall("sqs", operation, params, region, account)
                what = f"event source {name} → {function.function_name}: sqs:{operation}"
                if not _deliver(caller, call, what):
                    return False  # the messages become visible again, as when a poll fails
        return bool(original(self, function_arn, messages, queue_arn))

    LambdaBackend.send_sqs_batch = send_sqs_batch  # type: ignore[method-assign]


# moto's Step Functions interpreter makes every task's service call (Lambda invoke, SNS,
# DynamoDB, the SageMaker integration, ...) through ``boto_client_for`` with the fixed keys
# "ak"/"sk"; the state's credentials carry the role (the state machine's, unless the state
# names its own). Give each client a session of that role, assumed as states.amazonaws.com.
def _patch_state_machine_credentials() -> None:
    import sys

    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: F401
        state_task_factory,
        state_task_lambda,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import (
        StateTask,
    )
    from moto.stepfunctions.parser.asl.utils import boto_client

    original_credentials = StateTask._eval_state_credentials

    def eval_state_credentials(self: Any, env: Any) -> Any:
        # Step Functions assumes the role with the state machine as aws:SourceArn.
        credentials = original_credentials(self, env)
        machine = env.states.context_object.context_object_data.get("StateMachine", {})
        credentials.source_arn = machine.get("Id")  # type: ignore[attr-defined]
        return credentials

    StateTask._eval_state_credentials = eval_state_credentials  # type: ignore[method-assign]
    original = boto_client.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region, service, state_credentials)
        enforcer = _active
        role_arn = getattr(state_credentials, "role_arn", None)
        if enforcer is None or not role_arn:
            return client
        from botocore.exceptions import ClientError

        source_arn = getattr(state_credentials, "source_arn", None)
        try:
            credentials = enforcer.role_session(role_arn, "states.amazonaws.com", source_arn)
        except AssumeRoleDeniedError as denied:  # fails the task, as AWS fails it
            error: Any = {
                "Error": {"Code": "AccessDenied", "Message": denied.decision.message},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            }
            raise ClientError(error, "AssumeRole") from None
        return credentials.client(
            service,
            region_name=region,
            endpoint_url=client.meta.endpoint_url,
            config=client.meta.config,
        )

    for module in list(sys.modules.values()):
        if getattr(module, "boto_client_for", None) is original:
            module.boto_client_for = boto_client_for  # type: ignore[attr-defined]
    boto_client.boto_client_for = boto_client_for
