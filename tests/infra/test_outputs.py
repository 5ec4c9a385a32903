"""Every name an operator, the CLI or the local platform needs is a stack output."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Assembly
from tuneloop.local.platform import PLATFORM_OUTPUTS
from tuneloop.stack_outputs import STACK_OUTPUTS


@pytest.mark.parametrize("stage", ["dev", "local"])
def test_each_stack_declares_its_outputs_without_exports(
    stage: str, request: pytest.FixtureRequest
) -> None:
    # Given each stack's template
    assembly: Assembly = request.getfixturevalue(stage)
    for part, expected in STACK_OUTPUTS.items():
        outputs = assembly.template(part).get("Outputs", {})
        # Then it declares its outputs under their stable ids, none of them exported
        # (readers use DescribeStacks; an export would pin the value for other stacks)
        ours = {k: v for k, v in outputs.items() if not k.startswith("ExportsOutput")}
        assert sorted(ours) == sorted(expected), part
        assert all("Export" not in output for output in ours.values()), part
        assert all(output.get("Description") for output in ours.values()), part


def test_the_platform_reads_only_outputs_the_stacks_declare() -> None:
    declared = {name for names in STACK_OUTPUTS.values() for name in names}
    assert set(PLATFORM_OUTPUTS.values()) <= declared


def test_outputs_name_the_resources_they_describe(dev: Assembly) -> None:
    storage = dev.template("Storage")["Outputs"]
    assert storage["RawBucketName"]["Value"] == {"Ref": "RawBucket"}
    assert storage["ModelVersionsTableName"]["Value"] == {"Ref": "ModelVersionsTable"}
    assert storage["DataKeyArn"]["Value"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    serving = dev.template("Serving")["Outputs"]
    assert serving["EndpointName"]["Value"].startswith("tuneloopdevserving-endpoint-")
    assert serving["NotifyTopicArn"]["Value"]["Ref"].startswith("NotificationsNotifyTopic")
    pipeline = dev.template("Pipeline")["Outputs"]
    assert pipeline["StateMachineArn"]["Value"]["Ref"].startswith("RetrainStateMachine")
    ingestion = dev.template("Ingestion")["Outputs"]
    assert ingestion["IngestQueueUrl"]["Value"]["Ref"].startswith("IngestQueue")
