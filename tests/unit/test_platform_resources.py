"""The local platform finds names from the stacks' outputs, as the CLI does on AWS."""

from __future__ import annotations

import pytest

from tuneloop import stack_outputs as out
from tuneloop.local.deployer import DeployedStack, Deployment
from tuneloop.local.platform import PlatformError, Resources


def deployment(outputs: dict[str, str]) -> Deployment:
    return Deployment(stacks={"TuneLoop-local-Storage": DeployedStack("s", outputs=outputs)})


def test_resources_come_from_the_stack_outputs() -> None:
    # Given outputs as DescribeStacks returns them (and no function environment at all)
    outputs = {name: f"value-of-{name}" for names in out.STACK_OUTPUTS.values() for name in names}
    # When the platform discovers its resources
    resources = Resources.discover(deployment(outputs))
    # Then each name is the value of its output
    assert resources.raw_bucket == "value-of-RawBucketName"
    assert resources.state_machine_arn == "value-of-StateMachineArn"
    assert resources.endpoint_name == "value-of-EndpointName"
    assert resources.model_versions_table == "value-of-ModelVersionsTableName"


def test_a_missing_output_is_named() -> None:
    with pytest.raises(PlatformError, match="StateMachineArn"):
        Resources.discover(deployment({out.RAW_BUCKET: "raw"}))
