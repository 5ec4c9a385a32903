"""A request's every authorization, as AWS makes them: the public entry points (the
evaluation logic is in ``logic.py``, the operation rules in ``actions.py``)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from tuneloop.local.iam.actions import ALWAYS_ALLOWED, VIA_SERVICE, Need, needs_for
from tuneloop.local.iam.logic import Policy, decide, decide_assume_role, is_service
from tuneloop.local.iam.model import ApiCall, Caller, Decision, PolicyStore

Context = dict[str, list[str]]


def request_context(caller: Caller, call: ApiCall) -> Context:
    """The global condition keys of a request (IAM User Guide: "AWS global condition
    context keys"); keys are lower case, as condition keys are case-insensitive."""
    now = time.time()
    context: Context = {
        "aws:securetransport": ["true" if call.secure_transport else "false"],
        "aws:requestedregion": [call.region],
        "aws:currenttime": [datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:epochtime": [str(int(now))],
        "aws:principalisawsservice": ["true" if is_service(caller) else "false"],
    }
    if caller.service is not None:
        context["aws:principalservicename"] = [caller.service]
        if caller.source_account is not None:
            context["aws:sourceaccount"] = [caller.source_account]
            # SNS's default topic policy conditions on the delivering resource's owner.
            context["aws:sourceowner"] = [caller.source_account]
        if caller.source_arn is not None:
            context["aws:sourcearn"] = [caller.source_arn]
    else:
        context["aws:principalaccount"] = [caller.account]
        context["aws:principalarn"] = [caller.role_arn or caller.arn]
    return context


def _with(context: Context, extra: Mapping[str, Sequence[str]]) -> Context:
    merged = dict(context)
    merged.update({key.lower(): list(values) for key, values in extra.items()})
    return merged


def _resolve(store: PolicyStore, method: str, arn: str) -> str:
    # Names the rules cannot turn into ARNs alone (key aliases, secret suffixes).
    resolver = getattr(store, method, None)
    resolved = resolver(arn) if resolver is not None else None
    return str(resolved) if resolved else arn


def _identity(caller: Caller, store: PolicyStore) -> Sequence[Policy]:
    if caller.role_arn is None or is_service(caller):
        return ()
    return store.identity_policies(caller.role_arn)


def _decide_need(
    caller: Caller, call: ApiCall, need: Need, store: PolicyStore, context: Context
) -> list[Decision]:
    identity = _identity(caller, store)
    resource = need.resource
    if resource.startswith("arn:aws:kms:"):
        resource = _resolve(store, "key_arn", resource)
    elif resource.startswith("arn:aws:secretsmanager:"):
        resource = _resolve(store, "secret_arn", resource)
    policy_arn = resource if need.policy_arn == need.resource else need.policy_arn
    extra: dict[str, Sequence[str]] = dict(need.context)
    is_key = resource.startswith("arn:aws:kms:")
    if is_key and not is_service(caller):
        extra["kms:CallerAccount"] = [caller.account]
    decisions = [
        decide(
            caller,
            need.action,
            resource,
            _with(context, extra),
            identity_policies=identity,
            resource_policy=store.resource_policy(policy_arn) if policy_arn else None,
            key_policy=is_key,
        )
    ]
    for role, service in need.passed_roles:
        decisions.append(
            decide(
                caller,
                "iam:PassRole",
                role,
                _with(context, {"iam:PassedToService": [service]}),
                identity_policies=identity,
                resource_policy=None,
            )
        )
    key = store.encryption_key(need.key_of) if need.key_of and need.key_actions else None
    if key is not None:
        via = {"kms:ViaService": [f"{VIA_SERVICE[call.service]}.{call.region}.amazonaws.com"]}
        if not is_service(caller):
            via["kms:CallerAccount"] = [caller.account]
        key_policy = store.resource_policy(key)
        for action in need.key_actions:
            decisions.append(
                decide(
                    caller,
                    action,
                    key,
                    _with(context, via),
                    identity_policies=identity,
                    resource_policy=key_policy,
                    key_policy=True,
                )
            )
    return decisions


def authorize(caller: Caller, call: ApiCall, store: PolicyStore) -> list[Decision]:
    """Every authorization AWS makes for this request (the action on each resource it
    touches, plus implied ones: iam:PassRole with iam:PassedToService, kms:* on the
    resource's key with kms:ViaService), in order. The request is allowed only if all are.

    An operation no rule models is decided at action level on "*" and marked
    ``modelled=False``.
    """
    if (call.service, call.operation) in ALWAYS_ALLOWED:
        action = f"{call.service}:{call.operation}"
        return [Decision(True, action, "*", "", caller=caller.arn)]
    needs, modelled = needs_for(call)
    context = request_context(caller, call)
    decisions: list[Decision] = []
    seen: set[tuple[str, str]] = set()
    for need in needs:
        for decision in _decide_need(caller, call, need, store, context):
            if (decision.action, decision.resource) in seen:
                continue
            seen.add((decision.action, decision.resource))
            decisions.append(decision if modelled else replace(decision, modelled=False))
    return decisions


def authorize_assume_role(
    role_arn: str,
    principal_service: str,
    *,
    source_account: str | None,
    source_arn: str | None,
    store: PolicyStore,
) -> Decision:
    """A service assuming a role (Lambda, Step Functions, SageMaker, EventBridge): the
    role's trust policy must allow ``sts:AssumeRole`` for the service, with the
    ``aws:SourceAccount``/``aws:SourceArn`` the service sends."""
    account = role_arn.split(":")[4]
    principal = Caller(
        arn=principal_service,
        account=account,
        service=principal_service,
        source_arn=source_arn,
        source_account=source_account,
    )
    context: Context = {"aws:principalservicename": [principal_service]}
    if source_account is not None:
        context["aws:sourceaccount"] = [source_account]
    if source_arn is not None:
        context["aws:sourcearn"] = [source_arn]
    trust = store.trust_policy(role_arn)
    policy = (f"role/{role_arn.split('/')[-1]}/trust-policy", trust) if trust is not None else None
    return decide_assume_role(principal, role_arn, policy, context)


def allowed(decisions: Sequence[Decision]) -> bool:
    return all(d.allowed for d in decisions)


def first_denial(decisions: Sequence[Decision]) -> Decision | None:
    return next((d for d in decisions if not d.allowed), None)
