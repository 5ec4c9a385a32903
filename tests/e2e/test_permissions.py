"""A missing grant fails the step that needs it, with AWS's wording, as it would on AWS.

The CDK app is synthesized once; a copy of the assembly without two grants is deployed:
the ingest function's ``dynamodb:PutItem`` on its tables and the state machine's
``lambda:InvokeFunction``. Dropping data then fails ingestion, and a run fails at its first
step, each with the denial AWS would give, where an operator would look for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.loop_helpers import deployed_platform
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.iam.mutate import find_template_grant, without_grant
from tuneloop.local.platform import LocalPlatform, synth

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    base = make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny")
    work = tmp_path_factory.mktemp("permissions")
    context = {"stage": "local", "retrain_threshold": "1000", "base_model": str(base)}
    assembly = synth(work / "cdk.out", context)
    ingest_write = find_template_grant(
        assembly, resource_prefix="IngestRoleDefaultPolicy", action="dynamodb:PutItem"
    )
    machine_invoke = find_template_grant(
        assembly,
        resource_prefix="RetrainStateMachineRoleDefaultPolicy",
        action="lambda:InvokeFunction",
    )
    mutated = without_grant(assembly, work / "without-ingest-write", ingest_write)
    mutated = without_grant(mutated, work / "without-both", machine_invoke)
    with deployed_platform(work, context, assembly=mutated, enforce_permissions=True) as local:
        yield local


def test_ingestion_without_its_table_write_fails_with_aws_denial(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    # Given the ingest function's role lacks dynamodb:PutItem
    drop = tmp_path / "records.jsonl"
    drop.write_text(json.dumps({"text": "a record worth keeping"}) + "\n", encoding="utf-8")
    # When a drop arrives
    platform.drop_files([drop], dataset="denied")
    # Then the ingest function's log holds AWS's denial, and nothing is stored
    logs = platform.emulator.work_dir / "logs"
    ingest_log = next(logs.glob("lambda-*IngestFunction*.log"))
    text = ingest_log.read_text(encoding="utf-8")
    assert "AccessDeniedException" in text
    assert "assumed-role/TuneLoop-local-Ingestion-IngestRole" in text
    assert "is not authorized to perform: dynamodb:PutItem" in text
    assert not [d for d in platform.drops() if "records.jsonl" in d["key"] and d["stored"]]
    refused = [d for d in platform.emulator.enforcer.denials if "dynamodb:PutItem" in d.message]
    assert refused


def _history(execution_arn: str) -> list[dict[str, Any]]:
    sfn: Any = boto3.client("stepfunctions")
    return list(sfn.get_execution_history(executionArn=execution_arn)["events"])


def test_a_run_without_the_machines_invoke_grant_fails_at_its_first_step(
    platform: LocalPlatform,
) -> None:
    # Given the state machine's role lacks lambda:InvokeFunction
    sfn: Any = boto3.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=platform.resources.state_machine_arn,
        input=json.dumps({"trigger": "manual"}),
    )["executionArn"]
    # When the run starts
    deadline = time.monotonic() + 120
    while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.5)
    # Then PrepareDataset fails with the denial AWS gives the state machine's role
    events = _history(execution)
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]
    assert entered[0] == "PrepareDataset"
    failed = next(e for e in events if e["type"] in {"LambdaFunctionFailed", "TaskFailed"})
    details = next(v for k, v in failed.items() if k.endswith("EventDetails"))
    assert "RetrainStateMachineRole" in details["cause"]
    assert "is not authorized to perform: lambda:InvokeFunction" in details["cause"]
    assert sfn.describe_execution(executionArn=execution)["status"] == "FAILED"
