"""Which grants a run exercised, per role: the least-privilege report.

A grant is one policy statement by one action it allows. ``Recorder`` keeps every decision
of a run; ``report`` compares the grants the decisions used with every grant the roles'
policies hold (the store knows them), so a grant never exercised is a candidate to remove.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneloop.local.iam.model import ApiCall, Caller, Decision, PolicyStore


@dataclass(frozen=True)
class GrantUse:
    """One grant (a statement by an action pattern) and the resources it allowed in the run."""

    policy: str
    statement: int
    sid: str | None
    action: str  # the statement's action pattern, e.g. "s3:GetObject*"
    resources: tuple[str, ...] = ()


@dataclass
class RoleReport:
    role: str
    exercised: list[GrantUse] = field(default_factory=list)
    never_exercised: list[GrantUse] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)  # denial messages
    unmodelled: list[str] = field(default_factory=list)  # "service:Operation"


def _patterns(statement: Mapping[str, Any]) -> list[str]:
    actions = statement.get("Action") or statement.get("NotAction") or []
    return [actions] if isinstance(actions, str) else [str(a) for a in actions]


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = document.get("Statement", [])
    return [found] if isinstance(found, Mapping) else list(found)


class Recorder:
    """Thread-safe record of every decision, with the caller's role."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # role ARN (or caller ARN) → (policy, statement) → action → resources
        self._used: dict[str, dict[tuple[str, int], dict[str, set[str]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(set))
        )
        self._denied: dict[str, list[str]] = defaultdict(list)
        self._unmodelled: dict[str, set[str]] = defaultdict(set)
        self._sids: dict[tuple[str, int], str | None] = {}
        self._count = 0

    def record(self, caller: Caller, call: ApiCall, decisions: Sequence[Decision]) -> None:
        who = caller.role_arn or caller.arn
        with self._lock:
            self._count += len(decisions)
            for decision in decisions:
                if not decision.modelled:
                    self._unmodelled[who].add(f"{call.service}:{call.operation}")
                if not decision.allowed:
                    self._denied[who].append(decision.message)
                for grant in decision.grants:
                    key = (grant.policy, grant.statement)
                    self._sids[key] = grant.sid
                    self._used[who][key][decision.action].add(decision.resource)

    def decisions_count(self) -> int:
        """How many decisions were recorded."""
        with self._lock:
            return self._count

    def report(self, store: PolicyStore, roles: Sequence[str]) -> list[RoleReport]:
        """Per role: the grants exercised (with resources) and those never exercised."""
        from tuneloop.local.iam.logic import action_matches

        with self._lock:
            used = {who: {k: dict(v) for k, v in g.items()} for who, g in self._used.items()}
            denied = {who: list(v) for who, v in self._denied.items()}
            unmodelled = {who: sorted(v) for who, v in self._unmodelled.items()}
        reports = []
        for role in roles:
            report = RoleReport(
                role=role, denied=denied.get(role, []), unmodelled=unmodelled.get(role, [])
            )
            role_used = used.get(role, {})
            for policy_id, document in store.identity_policies(role):
                for index, statement in enumerate(_statements(document)):
                    if statement.get("Effect") != "Allow":
                        continue
                    actions_used = role_used.get((policy_id, index), {})
                    for pattern in _patterns(statement):
                        resources = sorted(
                            {
                                r
                                for action, rs in actions_used.items()
                                if action_matches([pattern], action)
                                for r in rs
                            }
                        )
                        use = GrantUse(
                            policy_id, index, statement.get("Sid"), pattern, tuple(resources)
                        )
                        (report.exercised if resources else report.never_exercised).append(use)
            reports.append(report)
        return reports

    def resource_policy_grants(self) -> dict[str, list[GrantUse]]:
        """Grants of resource policies (bucket, topic, queue, key, function) the run used."""
        with self._lock:
            found: dict[str, list[GrantUse]] = defaultdict(list)
            for who, grants in self._used.items():
                for (policy, index), actions in grants.items():
                    if policy.startswith("role/"):
                        continue
                    for action, resources in actions.items():
                        found[who].append(
                            GrantUse(
                                policy,
                                index,
                                self._sids.get((policy, index)),
                                action,
                                tuple(sorted(resources)),
                            )
                        )
            return dict(found)


def as_json(reports: Sequence[RoleReport]) -> str:
    def use(g: GrantUse) -> dict[str, Any]:
        return {
            "policy": g.policy,
            "statement": g.statement,
            "sid": g.sid,
            "action": g.action,
            "resources": list(g.resources),
        }

    return json.dumps(
        [
            {
                "role": r.role,
                "exercised": [use(g) for g in r.exercised],
                "never_exercised": [use(g) for g in r.never_exercised],
                "denied": r.denied,
                "unmodelled": r.unmodelled,
            }
            for r in reports
        ],
        indent=2,
    )


def as_text(reports: Sequence[RoleReport]) -> str:
    lines: list[str] = []
    for r in reports:
        lines.append(
            f"{r.role}: {len(r.exercised)} grants exercised, "
            f"{len(r.never_exercised)} never exercised"
        )
        for g in r.exercised:
            lines.append(
                f"  used   {g.action}  ({g.policy} #{g.statement}) on {', '.join(g.resources)}"
            )
        for g in r.never_exercised:
            lines.append(f"  unused {g.action}  ({g.policy} #{g.statement})")
        for op in r.unmodelled:
            lines.append(f"  unmodelled operation {op}")
        for message in r.denied:
            lines.append(f"  denied: {message}")
    return "\n".join(lines)
