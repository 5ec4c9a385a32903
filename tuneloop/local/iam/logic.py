"""AWS's policy evaluation logic for a request within one account.

Sources (IAM User Guide): "Policy evaluation logic", "Cross-account policy evaluation logic"
(not needed: the local platform is one account), "IAM JSON policy elements: Principal /
NotPrincipal / Action / NotAction / Resource / NotResource", "Troubleshoot access denied
error messages"; KMS Developer Guide: "Key policies in AWS KMS" (a key policy must allow,
itself or by delegating to the account, for anyone, the account root included).

- An explicit Deny in any policy that applies wins.
- The account root is allowed everything else, except on KMS keys, whose key policy decides.
- A service principal has no identity policies: only a resource policy can allow it.
- A role session is allowed when one of its identity policies allows, or a resource policy
  names it (its session, its role, or "*"). A resource policy that names the account only
  delegates to identity policies. For a KMS key the key policy must allow: naming the
  principal allows, naming the account requires an identity policy that allows as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tuneloop.local.iam.conditions import Context, conditions_match, glob_match
from tuneloop.local.iam.model import Caller, Decision, Grant

Policy = tuple[str, Mapping[str, Any]]  # (policy id, document)


def root_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def is_root(caller: Caller) -> bool:
    return caller.arn == root_arn(caller.account)


def is_service(caller: Caller) -> bool:
    return caller.service is not None


class PrincipalMatch(Enum):
    NONE = 0
    ACCOUNT = 1  # the statement names the caller's account: a delegation to identity policies
    DIRECT = 2  # the statement names the caller (session, role, service) or everyone


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = document.get("Statement", [])
    return [found] if isinstance(found, Mapping) else list(found)


def action_matches(patterns: Sequence[str], action: str) -> bool:
    # Service prefixes and action names are case-insensitive.
    return any(glob_match(p, action, ignore_case=True) for p in patterns)


def resource_matches(patterns: Sequence[str], resource: str) -> bool:
    # ARNs are case-sensitive; "*" may span colons and slashes.
    return any(glob_match(p, resource) for p in patterns)


def principal_match(element: Any, caller: Caller) -> PrincipalMatch:
    """How a Principal element names the caller."""
    if element == "*":
        return PrincipalMatch.DIRECT
    if not isinstance(element, Mapping):
        return PrincipalMatch.NONE
    best = PrincipalMatch.NONE
    if caller.service is not None and caller.service in _strings(element.get("Service")):
        return PrincipalMatch.DIRECT
    for value in _strings(element.get("AWS")):
        if value == "*":
            return PrincipalMatch.DIRECT
        if value in (caller.account, root_arn(caller.account)):
            if is_root(caller):
                return PrincipalMatch.DIRECT
            if not is_service(caller):
                best = PrincipalMatch.ACCOUNT
        elif value in (caller.arn, caller.role_arn):
            return PrincipalMatch.DIRECT
    return best


def _statement_principal(statement: Mapping[str, Any], caller: Caller) -> PrincipalMatch:
    if "Principal" in statement:
        return principal_match(statement["Principal"], caller)
    if "NotPrincipal" in statement:
        named = principal_match(statement["NotPrincipal"], caller)
        return PrincipalMatch.NONE if named is not PrincipalMatch.NONE else PrincipalMatch.DIRECT
    return PrincipalMatch.NONE  # a resource policy statement without a principal never applies


def statement_applies(
    statement: Mapping[str, Any], action: str, resource: str, context: Context
) -> bool:
    """Action/NotAction, Resource/NotResource and Condition (not the principal)."""
    if "NotAction" in statement:
        if action_matches(_strings(statement["NotAction"]), action):
            return False
    elif not action_matches(_strings(statement.get("Action")), action):
        return False
    if "NotResource" in statement:
        if resource_matches(_strings(statement["NotResource"]), resource):
            return False
    elif "Resource" in statement and not resource_matches(
        _strings(statement["Resource"]), resource
    ):
        return False
    return conditions_match(statement.get("Condition"), context)


@dataclass
class _Outcome:
    allows: list[Grant] = field(default_factory=list)
    account_allows: list[Grant] = field(default_factory=list)
    denies: list[Grant] = field(default_factory=list)


def _scan(
    policy: Policy,
    caller: Caller,
    action: str,
    resource: str,
    context: Context,
    *,
    with_principal: bool,
) -> _Outcome:
    policy_id, document = policy
    outcome = _Outcome()
    for index, statement in enumerate(statements(document)):
        match = _statement_principal(statement, caller) if with_principal else PrincipalMatch.DIRECT
        if match is PrincipalMatch.NONE:
            continue
        if not statement_applies(statement, action, resource, context):
            continue
        grant = Grant(policy=policy_id, statement=index, sid=statement.get("Sid"))
        if statement.get("Effect") == "Deny":
            outcome.denies.append(grant)
        elif match is PrincipalMatch.DIRECT:
            outcome.allows.append(grant)
        else:
            outcome.account_allows.append(grant)
    return outcome


def denial_message(caller: Caller, action: str, resource: str, reason: str) -> str:
    """AWS's access-denied wording ("on resource" only when the action has resources)."""
    on = "" if resource == "*" else f" on resource: {resource}"
    return f"User: {caller.arn} is not authorized to perform: {action}{on} {reason}"


def _implicit(policy_type: str, action: str) -> str:
    return f"because no {policy_type} policy allows the {action} action"


def decide(
    caller: Caller,
    action: str,
    resource: str,
    context: Context,
    *,
    identity_policies: Sequence[Policy],
    resource_policy: Policy | None,
    key_policy: bool = False,
) -> Decision:
    """One authorization: ``action`` on ``resource`` by ``caller``.

    ``key_policy``: ``resource_policy`` is a KMS key policy, which must allow.
    """

    def result(allowed: bool, reason: str = "", grants: Sequence[Grant] = ()) -> Decision:
        message = "" if allowed else denial_message(caller, action, resource, reason)
        return Decision(
            allowed=allowed,
            action=action,
            resource=resource,
            message=message,
            grants=tuple(grants),
            caller=caller.arn,
        )

    own = _Outcome()
    if caller.role_arn is not None and not is_service(caller):
        for policy in identity_policies:
            found = _scan(policy, caller, action, resource, context, with_principal=False)
            own.allows += found.allows
            own.denies += found.denies
    held = (
        _scan(resource_policy, caller, action, resource, context, with_principal=True)
        if resource_policy is not None
        else _Outcome()
    )
    if own.denies:
        return result(False, "with an explicit deny in an identity-based policy")
    if held.denies:
        return result(False, "with an explicit deny in a resource-based policy")

    if key_policy:
        if held.allows:
            return result(True, grants=held.allows)
        if held.account_allows and own.allows:
            return result(True, grants=held.account_allows + own.allows)
        if held.account_allows:
            return result(False, _implicit("identity-based", action))
        return result(False, _implicit("resource-based", action))
    if is_root(caller):
        return result(True, grants=held.allows)
    if is_service(caller):
        if held.allows:
            return result(True, grants=held.allows)
        return result(False, _implicit("resource-based", action))
    if own.allows or held.allows:
        return result(True, grants=own.allows + held.allows)
    return result(False, _implicit("identity-based", action))


def decide_assume_role(
    principal: Caller, role_arn: str, trust_policy: Policy | None, context: Context
) -> Decision:
    """``sts:AssumeRole`` by a service: only the role's trust policy can allow it."""
    action = "sts:AssumeRole"

    def result(allowed: bool, reason: str = "", grants: Sequence[Grant] = ()) -> Decision:
        message = "" if allowed else denial_message(principal, action, role_arn, reason)
        return Decision(
            allowed=allowed,
            action=action,
            resource=role_arn,
            message=message,
            grants=tuple(grants),
            caller=principal.arn,
        )

    if trust_policy is None:
        return result(False, _implicit("role trust", action))
    found = _scan(trust_policy, principal, action, role_arn, context, with_principal=True)
    if found.denies:
        return result(False, "with an explicit deny in the role trust policy")
    if found.allows:
        return result(True, grants=found.allows)
    return result(False, _implicit("role trust", action))
