"""Names are read from the stacks' outputs (DescribeStacks), as the CLI does on AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.integration.aws_fixtures import aws_credentials
from tuneloop import aws
from tuneloop.stack_outputs import STACK_OUTPUTS, read_outputs, stack_name

__all__ = ["aws_credentials"]


@pytest.fixture
def stacks(aws_credentials: None) -> Iterator[None]:
    # Given the four stacks of stage "dev", each with its outputs (and one export-only one)
    with mock_aws():
        cloudformation = aws.client("cloudformation")
        for part, ids in STACK_OUTPUTS.items():
            template = {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {
                    **{output_id: {"Value": f"{part}:{output_id}"} for output_id in ids},
                    "ExportsOutputRefTopic": {
                        "Value": {"Ref": "Topic"},
                        "Export": {"Name": f"{part}:topic"},
                    },
                },
            }
            cloudformation.create_stack(
                StackName=stack_name("dev", part), TemplateBody=json.dumps(template)
            )
        yield


def test_every_declared_output_is_read_by_its_id(stacks: None) -> None:
    outputs = read_outputs("dev")
    assert outputs["RawBucketName"] == "Storage:RawBucketName"
    assert outputs["StateMachineArn"] == "Pipeline:StateMachineArn"
    assert set(outputs) == {i for ids in STACK_OUTPUTS.values() for i in ids}


def test_another_stage_is_not_found(stacks: None) -> None:
    with pytest.raises(ClientError, match="does not exist"):
        read_outputs("prod")
