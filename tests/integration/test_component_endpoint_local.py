"""The endpoint of model lines deployed from a template on the emulator: moto's CloudFormation
with the model classes of tuneloop/local/cfn_models.py creates the endpoint under the
template's EndpointName and a base component that serves (the resource shapes of
stacks/constructs/component_endpoint.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.integration.emulator_fixtures import unenforced_emulator
from tests.integration.test_inference_components_local import (
    invoke_component,
    wait_for_component,
)
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.emulator import Emulator

ENDPOINT = "tuneloopdevserving-endpoint-0123abcd"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from unenforced_emulator(tmp_path_factory)


def _template(role_arn: str, base_model: str) -> dict[str, Any]:
    return {
        "Resources": {
            "BaseModel": {
                "Type": "AWS::SageMaker::Model",
                "Properties": {
                    "ExecutionRoleArn": role_arn,
                    "PrimaryContainer": {
                        "Image": "serving",
                        "Environment": {
                            "TUNELOOP_BASE_MODEL": base_model,
                            "TUNELOOP_ENDPOINT_NAME": ENDPOINT,
                        },
                    },
                },
            },
            "Config": {
                "Type": "AWS::SageMaker::EndpointConfig",
                "Properties": {
                    "ExecutionRoleArn": role_arn,
                    "ProductionVariants": [
                        {
                            "VariantName": "AllTraffic",
                            "InstanceType": "ml.g4dn.xlarge",
                            "InitialInstanceCount": 1,
                            "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
                        }
                    ],
                },
            },
            "Endpoint": {
                "Type": "AWS::SageMaker::Endpoint",
                "Properties": {
                    "EndpointName": ENDPOINT,
                    "EndpointConfigName": {"Fn::GetAtt": ["Config", "EndpointConfigName"]},
                },
            },
            "BaseComponent": {
                "Type": "AWS::SageMaker::InferenceComponent",
                "Properties": {
                    "InferenceComponentName": "base",
                    "EndpointName": {"Fn::GetAtt": ["Endpoint", "EndpointName"]},
                    "VariantName": "AllTraffic",
                    "Specification": {
                        "ModelName": {"Fn::GetAtt": ["BaseModel", "ModelName"]},
                        "ComputeResourceRequirements": {
                            "NumberOfCpuCoresRequired": 1,
                            "MinMemoryRequiredInMb": 1024,
                        },
                    },
                    "RuntimeConfig": {"CopyCount": 1},
                },
            },
        },
        "Outputs": {
            "EndpointName": {"Value": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}},
            "Component": {"Value": {"Fn::GetAtt": ["BaseComponent", "InferenceComponentName"]}},
        },
    }


def test_the_component_endpoint_template_deploys_and_its_base_serves(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = make_tiny_causal_lm(tmp_path_factory.mktemp("models") / "base")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    role = boto3.client("iam").create_role(RoleName="endpoint", AssumeRolePolicyDocument=trust)
    cloudformation: Any = boto3.client("cloudformation")
    cloudformation.create_stack(
        StackName="lines",
        TemplateBody=json.dumps(_template(role["Role"]["Arn"], str(base))),
    )
    (stack,) = cloudformation.describe_stacks(StackName="lines")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs == {"EndpointName": ENDPOINT, "Component": "base"}

    endpoint = boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService"
    described = wait_for_component("base", "InService")
    assert described["EndpointName"] == ENDPOINT
    answer = invoke_component("base", endpoint_name=ENDPOINT)
    assert answer["generated_text"] is not None
