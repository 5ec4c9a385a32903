"""The app synthesizes cleanly: cdk-nag, cfn-lint, no Docker, stack order."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import cast

import pytest
from cfnlint.api import lint_file

from tests.infra.conftest import Assembly

STACK_ORDER = ["Storage", "Serving", "Pipeline", "Ingestion"]


def _nag_violations(assembly: Assembly) -> list[str]:
    report = json.loads((assembly.outdir / "validation-report.json").read_text())
    return [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    ]


@pytest.mark.parametrize("stage", ["dev", "local"])
def test_synth_has_no_unacknowledged_cdk_nag_findings(
    stage: str, request: pytest.FixtureRequest
) -> None:
    # Given the synthesized app (synthesis itself fails on any unacknowledged finding)
    assembly: Assembly = request.getfixturevalue(stage)
    # Then the validation report lists no violation and all four stacks exist
    assert _nag_violations(assembly) == []
    assert sorted(assembly.templates) == sorted(
        f"TuneLoop-{stage}-{s}" for s in [*STACK_ORDER, "Console"]
    )


def test_unacknowledged_finding_fails_synth(tmp_path: Path) -> None:
    # Given the app plus one resource that breaks AwsSolutions rules (an unencrypted,
    # non-SSL queue without DLQ) and no acknowledgment
    from aws_cdk import Stack
    from aws_cdk import aws_sqs as sqs

    from app import build_app

    app = build_app(context={"stage": "dev"}, outdir=str(tmp_path))
    storage = cast(Stack, app.node.find_child("TuneLoop-dev-Storage"))
    sqs.Queue(storage, "Unacknowledged", encryption=sqs.QueueEncryption.UNENCRYPTED)
    # When synthesizing, then synthesis fails and the report names the finding
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    violations = _nag_violations(Assembly(outdir=tmp_path, templates={}))
    assert any(
        v.startswith("AwsSolutions-SQS4 at TuneLoop-dev-Storage/Unacknowledged") for v in violations
    ), violations


def test_cfn_lint_reports_no_errors(dev: Assembly, local: Assembly) -> None:
    for assembly in (dev, local):
        for name in assembly.templates:
            matches = lint_file(assembly.outdir / f"{name}.template.json")
            errors = [
                f"{m.rule.id} {m.message} ({m.path})"
                for m in matches
                if m.rule.severity.lower() == "error"
            ]
            assert errors == [], f"{name}: {errors}"


def test_synth_needs_no_docker(dev: Assembly) -> None:
    # Given the assembly's asset manifests
    asset_manifests = [json.loads(path.read_text()) for path in dev.outdir.glob("*.assets.json")]
    # Then no asset is a Docker image and the manifests mention no docker build
    assert asset_manifests
    assert all(not manifest.get("dockerImages") for manifest in asset_manifests)
    for artifact in dev.manifest["artifacts"].values():
        assert "DockerImage" not in json.dumps(artifact)
    assert not list(dev.outdir.glob("asset.*/Dockerfile"))


def test_stacks_depend_in_order_storage_serving_pipeline_ingestion(dev: Assembly) -> None:
    artifacts = dev.manifest["artifacts"]
    for earlier, later in itertools.pairwise(STACK_ORDER):
        dependencies = artifacts[f"TuneLoop-dev-{later}"].get("dependencies", [])
        assert f"TuneLoop-dev-{earlier}" in dependencies


def test_no_deploy_time_custom_resources(dev: Assembly) -> None:
    # S3 → EventBridge is a bucket property, not CDK's notifications custom resource
    for name, template in dev.templates.items():
        types = {r["Type"] for r in template["Resources"].values()}
        assert not {t for t in types if t.startswith("Custom::")}, name
        assert "AWS::CloudFormation::CustomResource" not in types, name
