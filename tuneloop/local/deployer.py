"""Deploys a synthesized cloud assembly (what `cdk synth` writes) into the emulator.

The same templates `cdk deploy` uses: file assets are uploaded to the bootstrap bucket as
the CDK CLI would, then each stack is created, in dependency order, through the emulator's
CloudFormation API.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tuneloop.local.emulator import ACCOUNT_ID, REGION

BOOTSTRAP_QUALIFIER = "hnb659fds"


class DeployError(RuntimeError):
    """A stack could not be created; the message names the stack, resource and reason."""


@dataclass
class DeployedStack:
    name: str
    outputs: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)  # logical id → physical id
    types: dict[str, str] = field(default_factory=dict)  # logical id → resource type


@dataclass
class Deployment:
    stacks: dict[str, DeployedStack] = field(default_factory=dict)

    def physical_ids(self, resource_type: str) -> dict[str, str]:
        """Logical id → physical id of every resource of one type, across stacks."""
        found = {}
        for stack in self.stacks.values():
            for logical_id, kind in stack.types.items():
                if kind == resource_type:
                    found[logical_id] = stack.resources[logical_id]
        return found

    def find(self, resource_type: str, logical_prefix: str) -> str:
        matches = [
            physical
            for logical, physical in self.physical_ids(resource_type).items()
            if logical.startswith(logical_prefix)
        ]
        if len(matches) != 1:
            raise KeyError(
                f"expected one {resource_type} whose logical id starts with {logical_prefix!r}, "
                f"found {len(matches)}"
            )
        return matches[0]

    def output(self, key_prefix: str) -> str:
        for stack in self.stacks.values():
            for key, value in stack.outputs.items():
                if key.startswith(key_prefix):
                    return value
        raise KeyError(f"no stack output named {key_prefix}*")


def _substitute(value: str) -> str:
    return value.replace("${AWS::AccountId}", ACCOUNT_ID).replace("${AWS::Region}", REGION)


def _bootstrap() -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=f"cdk-{BOOTSTRAP_QUALIFIER}-assets-{ACCOUNT_ID}-{REGION}")
    boto3.client("ssm").put_parameter(
        Name=f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version",
        Value="30",
        Type="String",
        Overwrite=True,
    )


def _zip_directory(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file():
                archive.write(file, str(file.relative_to(path)))
    return buffer.getvalue()


def _publish_assets(assembly: Path, asset_manifest: Path) -> int:
    manifest = json.loads(asset_manifest.read_text(encoding="utf-8"))
    s3 = boto3.client("s3")
    count = 0
    for asset in manifest.get("files", {}).values():
        source = assembly / asset["source"]["path"]
        if asset["source"].get("packaging") == "zip" and source.is_dir():
            body = _zip_directory(source)
        elif source.is_dir():
            raise DeployError(f"asset {source.name}: a directory must be zip-packaged")
        else:
            body = source.read_bytes()
        for destination in asset["destinations"].values():
            s3.put_object(
                Bucket=_substitute(destination["bucketName"]),
                Key=_substitute(destination["objectKey"]),
                Body=body,
            )
        count += 1
    if manifest.get("dockerImages"):
        raise DeployError(f"{asset_manifest.name}: Docker image assets need a Docker engine")
    return count


def _stack_order(artifacts: dict[str, Any]) -> list[str]:
    stacks = [n for n, a in artifacts.items() if a["type"] == "aws:cloudformation:stack"]
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for dependency in artifacts[name].get("dependencies", []):
            if dependency in stacks:
                visit(dependency)
        ordered.append(name)

    for name in sorted(stacks):
        visit(name)
    return ordered


def _wait_for_stack(cloudformation: Any, stack_name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return dict(stack)
        if "FAILED" in status or "ROLLBACK" in status:
            events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
            failures = [
                f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
                for e in events
                if "FAILED" in e.get("ResourceStatus", "")
            ]
            raise DeployError(f"stack {stack_name} {status}: " + "; ".join(failures[:5]))
        time.sleep(0.2)
    raise DeployError(f"stack {stack_name}: not created within 300 s")


def _describe(cloudformation: Any, stack_name: str, stack: dict[str, Any]) -> DeployedStack:
    deployed = DeployedStack(stack_name)
    deployed.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for resource in page["StackResourceSummaries"]:
            deployed.resources[resource["LogicalResourceId"]] = resource.get(
                "PhysicalResourceId", ""
            )
            deployed.types[resource["LogicalResourceId"]] = resource["ResourceType"]
    return deployed


# Gap: a state machine created by moto's CloudFormation lives in the plain Step Functions
# backend, which the ASL interpreter does not see. Re-create each one through the API, with
# the resolved definition and role, under the same name (hence the same ARN).
def _expose_state_machines(deployed: DeployedStack) -> None:
    from moto.stepfunctions.models import stepfunctions_backends

    plain = stepfunctions_backends[ACCOUNT_ID][REGION]
    sfn = boto3.client("stepfunctions")
    for logical_id, kind in deployed.types.items():
        if kind != "AWS::StepFunctions::StateMachine":
            continue
        machine = plain.describe_state_machine(deployed.resources[logical_id])
        sfn.create_state_machine(
            name=machine.name,
            definition=machine.definition,
            roleArn=machine.roleArn,
        )


# Gap: moto's CloudFormation ignores a bucket's NotificationConfiguration, so S3 would send
# nothing to EventBridge. Apply the template's EventBridge setting through the S3 API.
def _apply_bucket_notifications(deployed: DeployedStack, template: dict[str, Any]) -> None:
    s3 = boto3.client("s3")
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::S3::Bucket":
            continue
        notification = resource.get("Properties", {}).get("NotificationConfiguration", {})
        if notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=deployed.resources[logical_id],
                NotificationConfiguration={"EventBridgeConfiguration": {}},
            )


def deploy_assembly(assembly: Path, *, log: Any = print) -> Deployment:
    """Deploy every stack of the assembly; return what was created."""
    manifest = json.loads((assembly / "manifest.json").read_text(encoding="utf-8"))
    artifacts = manifest["artifacts"]
    _bootstrap()
    cloudformation = boto3.client("cloudformation")
    deployment = Deployment()
    for name in _stack_order(artifacts):
        artifact = artifacts[name]
        for dependency in artifact.get("dependencies", []):
            if artifacts.get(dependency, {}).get("type") == "cdk:asset-manifest":
                asset_file = assembly / artifacts[dependency]["properties"]["file"]
                _publish_assets(assembly, asset_file)
        properties = artifact["properties"]
        stack_name = properties.get("stackName", name)
        template = (assembly / properties["templateFile"]).read_text(encoding="utf-8")
        started = time.monotonic()
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=template,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = _wait_for_stack(cloudformation, stack_name)
        deployed = _describe(cloudformation, stack_name, stack)
        _expose_state_machines(deployed)
        _apply_bucket_notifications(deployed, json.loads(template))
        deployment.stacks[stack_name] = deployed
        log(
            f"  deployed {stack_name}: {len(deployed.resources)} resources "
            f"in {time.monotonic() - started:.1f} s"
        )
    return deployment


def cdk_environment() -> dict[str, str]:
    """Environment for `cdk synth` that needs no AWS account."""
    env = dict(os.environ)
    env.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    env["CDK_DEFAULT_ACCOUNT"] = ACCOUNT_ID
    env["CDK_DEFAULT_REGION"] = REGION
    return env
