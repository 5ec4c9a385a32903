"""cdk-nag v3 acknowledgments that name exactly the finding they accept.

``AwsSolutions-IAM5`` reports one finding per wildcard action and per wildcard resource,
with the resource rendered from the *synthesized* policy (cross-stack references become
``Fn::ImportValue`` export names only while the app is prepared for synthesis). So
:class:`WildcardAllowances` records the resource *token* that a grant used, and turns it
into the exact finding ID in a construct validation, which CDK runs after references are
resolved and before the validation plugins. No prefix matching, no stack-wide blanket.
"""

from __future__ import annotations

import json
from typing import Any

import jsii
from aws_cdk import Acknowledgment, Stack, Validations
from constructs import Construct, IValidation

IAM5 = "AwsSolutions-IAM5"


def flatten_reference(node: Any) -> str:
    """cdk-nag's rendering of a resolved CloudFormation value (``flattenCfnReference``)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return str(delimiter).join(flatten_reference(item) for item in items)
        if "Fn::Sub" in node:
            return flatten_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_reference(resource)}.{flatten_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def acknowledge(scope: Construct, finding_id: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=finding_id, reason=reason))


@jsii.implements(IValidation)
class _ResolveAllowances:
    def __init__(self, owner: WildcardAllowances) -> None:
        self._owner = owner

    def validate(self) -> list[str]:
        self._owner.acknowledge_resolved()
        return []


class WildcardAllowances:
    """Accepted ``AwsSolutions-IAM5`` findings of one IAM role (and its inline policy)."""

    def __init__(self, role: Construct) -> None:
        self._role = role
        self._resources: dict[str, str] = {}
        self._done = False
        role.node.add_validation(_ResolveAllowances(self))

    def allow_action(self, action: str, reason: str) -> None:
        """A wildcard action such as ``s3:GetObject*`` (no tokens: acknowledged now)."""
        acknowledge(self._role, f"{IAM5}[Action::{action}]", reason)

    def allow_resource(self, resource: str, reason: str) -> None:
        """A wildcard resource exactly as granted (may hold tokens: resolved later).

        One finding covers every statement of the role on that resource, so each grant
        that adds one states its own reason, and the acknowledgment carries them all.
        """
        known = self._resources.get(resource)
        if known is None or reason in known.split(" | "):
            self._resources.setdefault(resource, reason)
        else:
            self._resources[resource] = f"{known} | {reason}"

    def acknowledge_resolved(self) -> None:
        if self._done:
            return
        self._done = True
        stack = Stack.of(self._role)
        for resource, reason in self._resources.items():
            rendered = flatten_reference(stack.resolve(resource))
            acknowledge(self._role, f"{IAM5}[Resource::{rendered}]", reason)
