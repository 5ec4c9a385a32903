"""The Deploy, ConfirmDeployment and Rollback Lambdas for model lines, on the emulator: a
line's run deploys and promotes its adapter component only; the freeze holds a line's
automatic deploy; a line's alarm (evaluated by the local alarm evaluator on the component's
``AWS/SageMaker`` metrics) rolls back that line only, once; a person rolls back a line."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.confirm_deployment.handler import handler as confirm_handler
from lambdas.deploy.handler import handler as deploy_handler
from lambdas.rollback.handler import handler as rollback_handler
from tests.integration.archives import archive_folder
from tests.integration.aws_fixtures import (
    Platform,
    create_platform,
    handler_env,
    lambda_context,
    register_approved_package,
)
from tests.integration.emulator_fixtures import unenforced_emulator
from tests.integration.test_inference_components_local import (
    host_base_component,
    invoke_component,
    wait_for_component,
)
from tests.unit.tiny_models import make_tiny_adapter, make_tiny_causal_lm
from tuneloop import aws
from tuneloop.local.emulator import Emulator
from tuneloop.model_line_settings import ModelLineError, ModelLines, ModelLineSettings
from tuneloop.operations import audit
from tuneloop.operations.freeze import write_freeze
from tuneloop.release.control import production_key, read_production
from tuneloop.release.deployment import EndpointBusyError

LINES = ModelLines(
    (
        ModelLineSettings(name="support", datasets=("acme_support",)),
        ModelLineSettings(name="search", datasets=("wiki",)),
    )
)
SUPPORT_ALARM = "support-Invocation5XXErrors"
PERSON = {"name": "ops@example.com", "kind": "user", "source": "cli"}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    for running in unenforced_emulator(tmp_path_factory):
        aws.reset()
        yield running
    aws.reset()


@pytest.fixture(scope="module")
def platform(emulator: Emulator) -> Platform:
    return create_platform()


@pytest.fixture(scope="module")
def packages(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """version → approved package of its adapter, on a base hosted at the stage's endpoint."""
    root = tmp_path_factory.mktemp("models")
    base = make_tiny_causal_lm(root / "base")
    host_base_component(platform.endpoint_name, base)
    found: dict[str, str] = {}
    for seed, version in enumerate(("support-v1", "support-v2", "search-v1", "search-v2"), 1):
        folder = make_tiny_adapter(base, root / version, seed=seed, version=version)
        key = f"jobs/{version}/output/model.tar.gz"
        found[version] = register_approved_package(
            platform, version, archive_folder(folder), key=key
        )
    return found


@pytest.fixture
def env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    for function in ("deploy", "confirm_deployment", "rollback"):
        for name, value in handler_env(platform, function).items():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODEL_LINES", LINES.to_json())
    monkeypatch.setenv("MODEL_LINE_ALARMS", json.dumps({SUPPORT_ALARM: "support"}))
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tuneloop-test")
    return platform


def _retry_while_busy(call: Callable[[], dict[str, Any]], timeout: float = 300) -> dict[str, Any]:
    """As the state machine retries ConfirmDeployment on EndpointBusyError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except EndpointBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def release(
    version: str, line: str, packages: dict[str, str], **extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Deploy then ConfirmDeployment with the payloads the state machines send."""
    deployment = deploy_handler(
        {
            "model_version": version,
            "model_package_arn": packages[version],
            "model_line": line,
            **extra,
        },
        lambda_context(),
    )
    confirmation = _retry_while_busy(
        lambda: confirm_handler(
            {"model_version": version, "deployment": deployment, "model_line": line, **extra},
            lambda_context(),
        )
    )
    return deployment, confirmation


def _production(platform: Platform, line: str) -> tuple[str, str]:
    production = read_production(platform.control_table, production_key(line))
    assert production is not None
    lkg = production.last_known_good
    return production.current.model_version, lkg.model_version if lkg else ""


def _audit(platform: Platform) -> list[dict[str, Any]]:
    """Oldest first, as plain dicts."""
    return [record.to_dict() for record in reversed(audit.list_records(platform.audit_table))]


@pytest.fixture(scope="module")
def released(packages: dict[str, str], platform: Platform) -> dict[str, Any]:
    """Both lines released through the handlers: support v1 then v2, search v1 then v2."""
    with pytest.MonkeyPatch.context() as patch:
        for function in ("deploy", "confirm_deployment"):
            for name, value in handler_env(platform, function).items():
                patch.setenv(name, value)
        patch.setenv("MODEL_LINES", LINES.to_json())
        patch.setenv("POWERTOOLS_SERVICE_NAME", "tuneloop-test")
        return {
            version: release(version, version.split("-")[0], packages)
            for version in ("support-v1", "search-v1", "support-v2", "search-v2")
        }


def test_a_line_is_deployed_to_its_component_and_promoted_in_its_control_item(
    env: Platform, released: dict[str, Any]
) -> None:
    first_deployment, first_confirmation = released["support-v1"]
    assert first_deployment["endpoint_name"] == env.endpoint_name
    assert first_deployment["inference_component"] == "support"
    assert first_deployment["model_line"] == "support"
    assert first_deployment["previous_artifact_url"] == ""
    assert first_confirmation == {
        "production_version": "support-v1",
        "last_known_good_version": "",
    }
    second_deployment, second_confirmation = released["support-v2"]
    assert second_deployment["previous_artifact_url"] == first_deployment["artifact_url"]
    assert second_confirmation["last_known_good_version"] == "support-v1"
    assert _production(env, "support") == ("support-v2", "support-v1")
    assert _production(env, "search") == ("search-v2", "search-v1")
    # The endpoint's own production item is not written by a line's run
    assert read_production(env.control_table) is None
    assert invoke_component("support", endpoint_name=env.endpoint_name)["model_version"] == (
        "support-v2"
    )
    deploys = [r for r in _audit(env) if r["action"] == "auto_deploy"]
    assert {(r["target"], r["after"]["model_line"]) for r in deploys} >= {
        ("support-v2", "support"),
        ("search-v2", "search"),
    }


def test_the_freeze_holds_a_lines_automatic_deploy_but_not_a_persons(
    env: Platform, packages: dict[str, str], released: dict[str, Any]
) -> None:
    write_freeze(env.control_table, frozen=True, reason="incident review", by="ops")
    try:
        held = deploy_handler(
            {
                "model_version": "support-v1",
                "model_package_arn": packages["support-v1"],
                "model_line": "support",
            },
            lambda_context(),
        )
    finally:
        write_freeze(env.control_table, frozen=False, reason="", by="ops")
    assert held["held"] is True and held["model_line"] == "support"
    assert "incident review" in held["reason"]
    component = aws.sagemaker().describe_inference_component(InferenceComponentName="support")
    assert component["Specification"]["Container"]["ArtifactUrl"].endswith(
        "support-v2/output/model.tar.gz"
    )


def test_a_line_the_stage_does_not_have_is_refused_naming_the_lines(
    env: Platform, packages: dict[str, str]
) -> None:
    with pytest.raises(ModelLineError, match="support, search"):
        deploy_handler(
            {
                "model_version": "support-v1",
                "model_package_arn": packages["support-v1"],
                "model_line": "suport",
            },
            lambda_context(),
        )


def _alarm_messages(platform: Platform, emulator: Emulator) -> list[dict[str, Any]]:
    """A 5XX alarm on the support component, its notices read from an SQS inbox."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="alarm-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = aws.sns().create_topic(Name="tuneloop-alarms")["TopicArn"]
    aws.sns().subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    cloudwatch = aws.client("cloudwatch")
    # The shape stacks/constructs/endpoint_alarms.py gives a line's errors alarm.
    cloudwatch.put_metric_alarm(
        AlarmName=SUPPORT_ALARM,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "InferenceComponentName", "Value": "support"}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[topic],
    )
    # The emulator publishes a component's invocation metrics with InferenceComponentName.
    invoke_component("search", endpoint_name=platform.endpoint_name)
    cloudwatch.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "Invocation5XXErrors",
                "Dimensions": [{"Name": "InferenceComponentName", "Value": "support"}],
                "Value": 3.0,
            }
        ],
    )
    emulator.alarms.evaluate_once()
    state = cloudwatch.describe_alarms(AlarmNames=[SUPPORT_ALARM])["MetricAlarms"][0]
    assert state["StateValue"] == "ALARM"
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=5)
    return [json.loads(json.loads(m["Body"])["Message"]) for m in messages.get("Messages", [])]


def test_a_lines_alarm_rolls_back_that_line_only_and_once(
    env: Platform, emulator: Emulator, released: dict[str, Any]
) -> None:
    # Given the support line's alarm fired (the search line's requests carry no 5XX)
    notices = [m for m in _alarm_messages(env, emulator) if m["AlarmName"] == SUPPORT_ALARM]
    assert len(notices) == 1
    event = {"Records": [{"Sns": {"Message": json.dumps(notices[0])}}]}

    # When the Rollback Lambda gets the notice
    result = rollback_handler(event, lambda_context())

    # Then the support line is back on its last-known-good, the search line is untouched
    assert result["action"] == "rolled_back"
    assert (result["model_line"], result["inference_component"]) == ("support", "support")
    assert (result["from_version"], result["to_version"]) == ("support-v2", "support-v1")
    assert result["automatic_rollbacks_in_window"] == "1"
    wait_for_component("support", "InService")
    serving = invoke_component("support", endpoint_name=env.endpoint_name)["model_version"]
    assert serving == "support-v1"
    assert _production(env, "support") == ("support-v1", "")
    assert _production(env, "search") == ("search-v2", "search-v1")
    audited = [r for r in _audit(env) if r["action"] == "auto_rollback"]
    assert [(r["target"], r["after"]["model_line"]) for r in audited] == [("support-v2", "support")]
    # And the same alarm state change delivered again changes nothing
    again = rollback_handler(event, lambda_context())
    assert again["action"] == "ignored" and "handled already" in again["reason"]


def test_a_person_rolls_back_one_line(env: Platform, released: dict[str, Any]) -> None:
    result = rollback_handler(
        {"manual": True, "actor": PERSON, "reason": "odd answers", "model_line": "search"},
        lambda_context(),
    )
    assert result["action"] == "rolled_back"
    assert (result["model_line"], result["from_version"], result["to_version"]) == (
        "search",
        "search-v2",
        "search-v1",
    )
    wait_for_component("search", "InService")
    assert invoke_component("search", endpoint_name=env.endpoint_name)["model_version"] == (
        "search-v1"
    )
    by_person = [r for r in _audit(env) if r["action"] == "rollback"]
    assert by_person and by_person[-1]["actor"] == PERSON["name"]
    # A second one finds no last-known-good and says so
    nothing = rollback_handler(
        {"manual": True, "actor": PERSON, "reason": "again", "model_line": "search"},
        lambda_context(),
    )
    assert nothing["action"] == "none"


def test_an_alarm_of_no_line_takes_the_endpoint_path(env: Platform) -> None:
    notice = {
        "AlarmName": "endpoint-5xx",
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed",
        "StateChangeTime": "2026-01-01T00:00:00.000+0000",
        "Trigger": {
            "Dimensions": [
                {"name": "EndpointName", "value": env.endpoint_name},
                {"name": "VariantName", "value": "AllTraffic"},
            ]
        },
    }
    result = rollback_handler(
        {"Records": [{"Sns": {"Message": json.dumps(notice)}}]}, lambda_context()
    )
    assert "model_line" not in result
    assert result["action"] == "none"  # the endpoint itself has no production item


def _refusal_alarm(name: str, dimensions: dict[str, str]) -> None:
    """A refusal-rate alarm at the stage's bound, shaped as endpoint_alarms.py makes it."""
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName=name,
        Namespace="TuneLoop/Endpoint",
        MetricName="Refusal",
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0.2,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )


def _refusals(version: str, dimensions: dict[str, str], refused: int, answers: int) -> None:
    aws.client("cloudwatch").put_metric_data(
        Namespace="TuneLoop/Endpoint",
        MetricData=[
            {
                "MetricName": "Refusal",
                "Dimensions": [
                    *({"Name": k, "Value": v} for k, v in dimensions.items()),
                    {"Name": "ModelVersion", "Value": version},
                ],
                "Value": 1.0 if n < refused else 0.0,
                "Timestamp": datetime.now(UTC) - timedelta(minutes=5),
            }
            for n in range(answers)
        ],
    )


def _threshold(name: str) -> float:
    (alarm,) = aws.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return float(alarm["Threshold"])


def test_deploying_a_line_rebounds_its_quality_alarms_from_its_outgoing_version(
    env: Platform,
    packages: dict[str, str],
    released: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given each line's refusal alarm and the endpoint's, all at the stage's bound 0.2
    endpoint = {"EndpointName": env.endpoint_name}
    for line in ("support", "search"):
        _refusal_alarm(f"{line}-refusal", {**endpoint, "InferenceComponentName": line})
    _refusal_alarm("endpoint-refusal", endpoint)
    monkeypatch.setenv("QUALITY_ALARMS", json.dumps({"refusal": "endpoint-refusal"}))
    monkeypatch.setenv(
        "LINE_QUALITY_ALARMS",
        json.dumps({line: {"refusal": f"{line}-refusal"} for line in ("support", "search")}),
    )
    # and support's outgoing version refused 30% of the answers on its component, while
    # the same version's endpoint-wide series and the search line refused everything
    outgoing, _ = _production(env, "support")
    _refusals(outgoing, {**endpoint, "InferenceComponentName": "support"}, 30, 100)
    _refusals(outgoing, endpoint, 50, 50)
    search_version, _ = _production(env, "search")
    _refusals(search_version, {**endpoint, "InferenceComponentName": "search"}, 50, 50)

    # When Deploy puts the other support version live on the support line
    incoming = "support-v1" if outgoing == "support-v2" else "support-v2"
    deployment, _ = release(incoming, "support", packages, manual=True, actor=PERSON)

    # Then only the support line's alarm is re-bounded, to its outgoing rate x factor 2
    # (the one or two answers the emulator served for that version count too)
    assert deployment["model_line"] == "support"
    assert _threshold("support-refusal") == pytest.approx(0.6, abs=0.02)
    assert _threshold("search-refusal") == 0.2
    assert _threshold("endpoint-refusal") == 0.2
    assert _production(env, "support")[0] == incoming
