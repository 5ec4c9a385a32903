"""Remove one grant from a cloud assembly, or from the policies a run is decided against.

A grant is one action pattern of one Allow statement. ``without_grant`` writes a copy of
an assembly whose templates lack it (to deploy and run the loop against);
``GrantRemoved`` is a ``PolicyStore`` that hides it from the deployed policies (to
re-decide recorded requests without deploying again). Statements keep their index, so a
``Grant`` still names the same statement after the removal.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.local.iam.model import PolicyStore

# What a statement whose only action was removed allows: nothing.
_NOTHING = "tuneloop:NoAction"


def _actions(statement: Mapping[str, Any]) -> list[Any]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str | dict) else list(actions)


def strip_action(document: Mapping[str, Any], index: int, pattern: str) -> dict[str, Any]:
    """``document`` with ``pattern`` gone from the Action of statement ``index``."""
    stripped = copy.deepcopy(dict(document))
    found = stripped.get("Statement", [])
    statements = [found] if isinstance(found, dict) else found
    statement = statements[index]
    remaining = [a for a in _actions(statement) if a != pattern]
    statement["Action"] = remaining or [_NOTHING]
    if isinstance(found, dict):
        stripped["Statement"] = statement
    return stripped


@dataclass(frozen=True)
class TemplateGrant:
    """Where a grant lives in an assembly: template, policy resource, statement, action."""

    template: str  # file name in the assembly
    resource: str  # logical id of the AWS::IAM::Policy (or Role, for an inline policy)
    policy_name: str
    statement: int
    action: str


def _policy_documents(resource: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    properties = resource.get("Properties", {})
    if resource.get("Type") in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
        name = properties.get("PolicyName") or properties.get("ManagedPolicyName") or ""
        return [(str(name), properties.get("PolicyDocument", {}))]
    if resource.get("Type") == "AWS::IAM::Role":
        return [
            (str(p.get("PolicyName", "")), p.get("PolicyDocument", {}))
            for p in properties.get("Policies", [])
        ]
    return []


def template_grants(assembly: Path) -> list[TemplateGrant]:
    """Every (identity-policy statement, action pattern) in an assembly's templates."""
    grants = []
    for path in sorted(assembly.glob("*.template.json")):
        resources = json.loads(path.read_text(encoding="utf-8")).get("Resources", {})
        for logical, resource in resources.items():
            for name, document in _policy_documents(resource):
                found = document.get("Statement", [])
                for index, statement in enumerate([found] if isinstance(found, dict) else found):
                    if statement.get("Effect") != "Allow":
                        continue
                    for action in _actions(statement):
                        if isinstance(action, str):
                            grants.append(TemplateGrant(path.name, logical, name, index, action))
    return grants


def find_template_grant(
    assembly: Path, *, resource_prefix: str, action: str, resource_contains: str = ""
) -> TemplateGrant:
    """The grant of ``action`` in the policy whose logical id starts with ``resource_prefix``
    (and whose statement's Resource mentions ``resource_contains``)."""
    for grant in template_grants(assembly):
        if grant.action != action or not grant.resource.startswith(resource_prefix):
            continue
        if resource_contains:
            template = json.loads((assembly / grant.template).read_text(encoding="utf-8"))
            documents = _policy_documents(template["Resources"][grant.resource])
            document = dict(documents)[grant.policy_name]
            found = document.get("Statement", [])
            statement = ([found] if isinstance(found, dict) else found)[grant.statement]
            if resource_contains not in json.dumps(statement.get("Resource", "")):
                continue
        return grant
    raise LookupError(f"no grant of {action} in a policy named {resource_prefix}*")


def without_grant(assembly: Path, target: Path, grant: TemplateGrant) -> Path:
    """Copy ``assembly`` to ``target`` with ``grant`` removed from its template."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(assembly, target, symlinks=True)
    path = target / grant.template
    template = json.loads(path.read_text(encoding="utf-8"))
    resource = template["Resources"][grant.resource]
    properties = resource["Properties"]
    if resource["Type"] == "AWS::IAM::Role":
        for policy in properties["Policies"]:
            if policy.get("PolicyName") == grant.policy_name:
                policy["PolicyDocument"] = strip_action(
                    policy["PolicyDocument"], grant.statement, grant.action
                )
    else:
        properties["PolicyDocument"] = strip_action(
            properties["PolicyDocument"], grant.statement, grant.action
        )
    path.write_text(json.dumps(template, indent=1), encoding="utf-8")
    return target


class GrantRemoved:
    """A ``PolicyStore`` that answers as ``store`` does, without one grant."""

    def __init__(self, store: PolicyStore, policy: str, statement: int, action: str) -> None:
        self._store = store
        self._policy = policy
        self._statement = statement
        self._action = action

    def _strip(self, policy: str, document: Mapping[str, Any]) -> Mapping[str, Any]:
        if policy != self._policy:
            return document
        return strip_action(document, self._statement, self._action)

    def identity_policies(self, role_arn: str) -> Sequence[tuple[str, Mapping[str, Any]]]:
        return [(p, self._strip(p, d)) for p, d in self._store.identity_policies(role_arn)]

    def trust_policy(self, role_arn: str) -> Mapping[str, Any] | None:
        return self._store.trust_policy(role_arn)

    def resource_policy(self, resource_arn: str) -> tuple[str, Mapping[str, Any]] | None:
        found = self._store.resource_policy(resource_arn)
        return None if found is None else (found[0], self._strip(*found))

    def encryption_key(self, resource_arn: str) -> str | None:
        return self._store.encryption_key(resource_arn)

    def __getattr__(self, name: str) -> Any:
        # The store's optional resolvers (key aliases, secret names) pass through.
        return getattr(self._store, name)
