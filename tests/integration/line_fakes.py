"""In-memory stand-ins for the calls of a model line's operations that moto does not serve:
``DescribeInferenceComponent`` (moto has no inference components) and the Rollback
function's ``Invoke`` (a real handler is the serving side's test). Both answer through
botocore's ``before-call`` event, so the code under test uses its ordinary clients."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.response import StreamingBody

from tuneloop import aws
from tuneloop.release.control import Release, production_key, replace_production


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


class InferenceComponents:
    """``DescribeInferenceComponent`` answered from ``components`` (name → status)."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}
        events: Any = aws.sagemaker().meta.events  # a handler's answer replaces the call
        events.register("before-call.sagemaker.DescribeInferenceComponent", self._describe)

    def add(self, name: str, status: str = "InService", artifact_url: str = "") -> None:
        self.components[name] = {
            "InferenceComponentName": name,
            "InferenceComponentArn": f"arn:aws:sagemaker:us-east-1:123456789012:"
            f"inference-component/{name}",
            "EndpointName": "tuneloop-endpoint",
            "InferenceComponentStatus": status,
            "Specification": {"Container": {"ArtifactUrl": artifact_url}},
            "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
            "LastModifiedTime": datetime(2026, 1, 2, tzinfo=UTC),
        }

    def _describe(self, params: dict[str, Any], **_: Any) -> tuple[_Http, dict[str, Any]]:
        name = json.loads(params["body"])["InferenceComponentName"]
        if name in self.components:
            return _Http(200), dict(self.components[name])
        message = f"Could not find inference component {name!r}."
        return _Http(400), {"Error": {"Code": "ValidationException", "Message": message}}


class RollbackFunction:
    """The Rollback function's ``Invoke``: records each event, answers ``result``."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.events: list[dict[str, Any]] = []
        aws.client("lambda").meta.events.register("before-call.lambda.Invoke", self._invoke)

    def _invoke(self, params: dict[str, Any], **_: Any) -> tuple[_Http, dict[str, Any]]:
        self.events.append(json.loads(params["body"]))
        body = json.dumps(self.result).encode()
        return _Http(200), {
            "StatusCode": 200,
            "Payload": StreamingBody(io.BytesIO(body), len(body)),
        }


def put_line_production(
    control_table: str, model_line: str, version: str, last_known_good: str = ""
) -> None:
    """The Control item ``production#<line>`` as ConfirmDeployment leaves it."""
    lkg = (
        Release(last_known_good, "", f"s3://models/{last_known_good}") if last_known_good else None
    )
    replace_production(
        control_table,
        Release(version, "", f"s3://models/{version}"),
        last_known_good=lkg,
        expected=None,
        key=production_key(model_line),
    )


def release_input(execution_arn: str) -> dict[str, Any]:
    """The input a release execution was started with."""
    described = aws.stepfunctions().describe_execution(executionArn=execution_arn)
    return dict(json.loads(described["input"]))


def create_release_machine() -> str:
    """A trivial state machine in moto standing in for the release state machine."""
    return str(
        aws.stepfunctions().create_state_machine(
            name="release",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/release",
        )["stateMachineArn"]
    )
