"""The endpoint of model lines in the synthesized templates (dev stage with two lines):
the base model, an endpoint config with no model, the endpoint under the stage's one name,
the base component; five alarms per line on its component's metrics, mapped to the line for
Rollback; the Lambdas' line environment and their narrow component permissions; the release
state machine's model_line. cdk-nag and the stage validation ran in the synth."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from stacks.config import ConfigError, load_stage_config
from stacks.constructs.component_endpoint import ComponentEndpoint, base_container_environment
from tests.infra.conftest import MODEL_LINES, Assembly
from tuneloop.model_line_settings import BASE_COMPONENT
from tuneloop.serving.app import BASE_MODEL_VARIABLE

SERVING = "TuneLoop-dev-Serving"
PIPELINE = "TuneLoop-dev-Pipeline"


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    (found,) = [
        v["Properties"]
        for v in _of_type(template, "AWS::Lambda::Function").values()
        if v["Properties"].get("Handler") == f"lambdas.{handler}.handler.handler"
    ]
    return found


def _statements(template: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in _of_type(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if action
        in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    ]


def _component_names(statement: dict[str, Any]) -> set[str]:
    """The names at the end of the statement's ``inference-component/`` ARNs."""
    rendered = json.dumps(statement["Resource"])
    return {part.split('"')[0] for part in rendered.split(":inference-component/")[1:]}


def test_the_serving_stack_creates_the_endpoint_of_components(dev_lines: Assembly) -> None:
    serving = dev_lines.templates[SERVING]
    (model,) = _of_type(serving, "AWS::SageMaker::Model").values()
    environment = model["Properties"]["PrimaryContainer"]["Environment"]
    # LMI on the base, LoRA on, one adapter slot per line (the stage's max_loras is 1)
    assert environment["HF_MODEL_ID"] == "HuggingFaceTB/SmolLM2-1.7B-Instruct"
    assert environment["OPTION_ENABLE_LORA"] == "true"
    assert environment["OPTION_MAX_LORAS"] == str(len(MODEL_LINES))
    assert "ModelDataUrl" not in model["Properties"]["PrimaryContainer"]

    ((config_id, config),) = _of_type(serving, "AWS::SageMaker::EndpointConfig").items()
    (variant,) = config["Properties"]["ProductionVariants"]
    assert "ModelName" not in variant
    assert variant["InstanceType"] == "ml.g5.xlarge"
    assert variant["InitialInstanceCount"] == 1
    assert variant["RoutingConfig"] == {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
    assert "ExecutionRoleArn" in config["Properties"]

    ((endpoint_id, endpoint),) = _of_type(serving, "AWS::SageMaker::Endpoint").items()
    # One endpoint name: the one Deploy, the alarms and the outputs use.
    rollback_env = _function(serving, "rollback")["Environment"]["Variables"]
    assert endpoint["Properties"]["EndpointName"] == rollback_env["ENDPOINT_NAME"]
    assert endpoint["Properties"]["EndpointConfigName"] == {
        "Fn::GetAtt": [config_id, "EndpointConfigName"]
    }

    (base,) = _of_type(serving, "AWS::SageMaker::InferenceComponent").values()
    properties = base["Properties"]
    assert properties["InferenceComponentName"] == BASE_COMPONENT
    assert properties["EndpointName"] == {"Fn::GetAtt": [endpoint_id, "EndpointName"]}
    assert properties["RuntimeConfig"] == {"CopyCount": 1}
    assert properties["Specification"]["ComputeResourceRequirements"] == {
        "NumberOfAcceleratorDevicesRequired": 1,  # ml.g5.xlarge's one A10G
        "MinMemoryRequiredInMb": 8192,
    }


def test_without_lines_deploy_creates_the_endpoint(dev: Assembly) -> None:
    serving = dev.templates[SERVING]
    for kind in ("Model", "EndpointConfig", "Endpoint", "InferenceComponent"):
        assert not _of_type(serving, f"AWS::SageMaker::{kind}")


def test_each_line_has_alarms_on_its_component_mapped_to_it(dev_lines: Assembly) -> None:
    serving = dev_lines.templates[SERVING]
    alarms = _of_type(serving, "AWS::CloudWatch::Alarm")
    by_line: dict[str, list[str]] = {}
    for logical_id, alarm in alarms.items():
        dimensions = {d["Name"]: d["Value"] for d in alarm["Properties"].get("Dimensions", [])}
        line = dimensions.get("InferenceComponentName")
        if line:
            by_line.setdefault(line, []).append(logical_id)
            assert alarm["Properties"]["AlarmActions"]  # the rollback topic, as the endpoint's
            if alarm["Properties"]["Namespace"] == "AWS/SageMaker":
                assert set(dimensions) == {"InferenceComponentName"}
            else:
                assert set(dimensions) == {"EndpointName", "InferenceComponentName"}
    assert {line: len(ids) for line, ids in by_line.items()} == {"support": 5, "search": 5}
    metrics = {alarms[i]["Properties"]["MetricName"] for i in by_line["support"]}
    assert {"Invocation5XXErrors", "ModelLatency"} <= metrics

    mapping = _function(serving, "rollback")["Environment"]["Variables"]["MODEL_LINE_ALARMS"]
    rendered = json.dumps(mapping)
    for line, ids in by_line.items():
        for logical_id in ids:
            assert f'{{"Ref": "{logical_id}"}}, "\\":\\"{line}\\"' in rendered


def test_the_lambdas_get_the_lines_and_narrow_component_permissions(
    dev_lines: Assembly,
) -> None:
    serving, pipeline = dev_lines.templates[SERVING], dev_lines.templates[PIPELINE]
    names = [str(line["name"]) for line in MODEL_LINES]  # type: ignore[index]
    for template, handler in (
        (pipeline, "deploy"),
        (pipeline, "confirm_deployment"),
        (serving, "rollback"),
    ):
        lines = json.loads(_function(template, handler)["Environment"]["Variables"]["MODEL_LINES"])
        assert [line["name"] for line in lines] == names
    (create,) = _statements(pipeline, "sagemaker:CreateInferenceComponent")
    assert _component_names(create) == set(names)  # never the base component
    updates = _statements(pipeline, "sagemaker:UpdateInferenceComponent")
    updates += _statements(serving, "sagemaker:UpdateInferenceComponent")
    assert len(updates) == 2
    for statement in updates:
        assert _component_names(statement) == set(names)
    describes = _statements(pipeline, "sagemaker:DescribeInferenceComponent")
    assert len(describes) == 2  # Deploy and ConfirmDeployment


def test_the_release_state_machine_passes_the_model_line(dev_lines: Assembly) -> None:
    pipeline = dev_lines.templates[PIPELINE]
    machines = _of_type(pipeline, "AWS::StepFunctions::StateMachine")
    definitions = [json.dumps(m["Properties"]["DefinitionString"]) for m in machines.values()]
    (release,) = [d for d in definitions if "HasModelLine" in d]
    assert '\\"model_line.$\\":\\"$.model_line\\"' in release
    assert "EndpointBusyError" in release  # ConfirmDeployment waits for the component


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rollout": {"mode": "canary", "instance_count": 10}}, "rollout.mode"),
        ({}, "autoscaling.enabled"),  # dev autoscales its variant
        # The Hugging Face DLC has no adapter API: lines need LMI on AWS
        ({"autoscaling": {"enabled": False}}, "serving_backend"),
    ],
)
def test_settings_a_component_endpoint_cannot_honour_fail_the_stage(
    overrides: dict[str, Any], field: str
) -> None:
    base = {"model_lines": MODEL_LINES, "autoscaling": {"enabled": False}}
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as raised:
        load_stage_config(
            "dev", {**base, **overrides} if overrides else {"model_lines": MODEL_LINES}
        )
    assert "model_lines" in str(raised.value)


def test_the_local_platforms_base_is_our_server_on_the_base_model() -> None:
    config = load_stage_config(
        "local", {"model_lines": MODEL_LINES, "autoscaling": {"enabled": False}}
    )
    environment = base_container_environment(config, "lines")
    assert environment[BASE_MODEL_VARIABLE] == config.base_model
    assert environment["SAGEMAKER_PROGRAM"] == "inference.py"
    assert "OPTION_ENABLE_LORA" not in environment


def test_an_s3_base_model_is_readable_by_the_endpoint_role() -> None:
    # LMI downloads an s3:// base as the endpoint's role; nothing else outside the lake.
    config = load_stage_config(
        "dev",
        {
            "model_lines": MODEL_LINES,
            "autoscaling": {"enabled": False},
            "serving_backend": "lmi",
            "base_model": "s3://company-models/llama-3-8b/",
        },
    )
    app = cdk.App()
    stack = cdk.Stack(app, "Lines", env=cdk.Environment(account="123456789012", region="us-east-1"))
    ComponentEndpoint(
        stack, "Endpoint", endpoint_name="lines", artifacts=s3.Bucket(stack, "A"), config=config
    )
    template = dict(Template.from_stack(stack).to_json())
    reads = _statements(template, "s3:GetObject")
    resources = json.dumps([statement["Resource"] for statement in reads])
    assert ":s3:::company-models/llama-3-8b/*" in resources
    (listing,) = _statements(template, "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["llama-3-8b/*"]}}
