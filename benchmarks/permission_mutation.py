"""Permission mutation: does the local platform catch every grant the loop needs?

    .venv/bin/python benchmarks/permission_mutation.py [--work-dir DIR] [--full-runs 3]
        [--base-model REF]

A grant is one action pattern of one Allow statement in a role's policy. Removing a grant
the loop exercises should make the local platform deny something the loop does; a removal
it does not notice is one AWS would notice and we would not. Running the whole loop once
per grant would take hours on two cores, so:

1. **Recorded run.** The demo's loop runs once with enforcement on; every request and its
   decisions are kept. The grants report gives, per role, the grants exercised.
2. **Re-decided removals.** For each exercised grant, the requests it allowed are decided
   again against the same deployed policies with only that grant removed. The removal is
   *caught* if at least one of them is now denied. Figure: caught / exercised.
3. **Full-loop removals** (``--full-runs``, default 3): a copy of the synthesized assembly
   without one grant is deployed and the loop run; each must fail at the step that needs
   the grant, with AWS's denial. Picked: the state machine's ``sns:Publish`` (Notify), the
   ingest function's ``dynamodb:PutItem`` (ingestion), the SageMaker role's
   ``s3:GetObject`` on the code asset (Train).

Baseline: none is needed for a count; the figure is caught/total (goal: all).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneloop.local.demo import run_demo
from tuneloop.local.emulator import policy_enforcer
from tuneloop.local.iam.credentials import CredentialRegistry
from tuneloop.local.iam.enforce import Enforcer
from tuneloop.local.iam.evaluate import authorize
from tuneloop.local.iam.logic import action_matches
from tuneloop.local.iam.model import ApiCall, Caller, Decision
from tuneloop.local.iam.mutate import GrantRemoved, find_template_grant, without_grant
from tuneloop.local.iam.usage import GrantUse, Recorder
from tuneloop.local.platform import LocalPlatform, synth

CONTEXT = {"stage": "local", "retrain_threshold": "10"}


class RequestLog(Recorder):
    """The usage recorder that also keeps each request (without its payload bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[Caller, ApiCall, tuple[Decision, ...]]] = []
        self._requests_lock = threading.Lock()

    def record(self, caller: Caller, call: ApiCall, decisions: Sequence[Decision]) -> None:
        super().record(caller, call, decisions)
        params = {k: v for k, v in call.params.items() if not isinstance(v, bytes | bytearray)}
        slim = ApiCall(call.service, call.operation, params, call.region, call.account)
        with self._requests_lock:
            self.requests.append((caller, slim, tuple(decisions)))


def recording_enforcer(log: RequestLog) -> Any:
    def make(registry: CredentialRegistry, enabled: bool, log_path: Path) -> Enforcer:
        enforcer = policy_enforcer(registry, enabled, log_path)
        enforcer.recorder = log
        return enforcer

    return make


@dataclass
class Removal:
    role: str
    grant: GrantUse
    requests: int = 0  # requests the grant allowed in the recorded run
    caught: bool = False
    example: str = ""  # a denial the removal causes
    # When not caught: the statements that still allow every request (a duplicate grant,
    # which AWS would not notice either).
    also_granted_by: tuple[str, ...] = ()


def _uses(decision: Decision, grant: GrantUse) -> bool:
    return any(
        g.policy == grant.policy and g.statement == grant.statement for g in decision.grants
    ) and action_matches([grant.action], decision.action)


def redecide(platform: LocalPlatform, log: RequestLog) -> list[Removal]:
    """Each exercised grant removed in turn; the recorded requests it allowed decided again."""
    store = platform.emulator.enforcer.store
    removals = []
    for report in platform.emulator.permission_report():
        for grant in report.exercised:
            removal = Removal(report.role.rsplit("/", 1)[-1], grant)
            without = GrantRemoved(store, grant.policy, grant.statement, grant.action)
            for caller, call, decisions in log.requests:
                if not any(d.allowed and _uses(d, grant) for d in decisions):
                    continue
                removal.requests += 1
                redecided = authorize(caller, call, without)
                denied = next((d for d in redecided if not d.allowed), None)
                if denied is not None:
                    removal.caught = True
                    removal.example = denied.message
                    break
                others = {
                    f"{g.policy} #{g.statement}"
                    for d in redecided
                    if action_matches([grant.action], d.action)
                    for g in d.grants
                }
                removal.also_granted_by = tuple(sorted(set(removal.also_granted_by) | others))
            if removal.caught:
                removal.also_granted_by = ()
            removals.append(removal)
    return removals


@dataclass(frozen=True)
class FullRun:
    name: str
    prefix: str  # logical id prefix of the policy resource
    action: str
    resource_contains: str = ""
    expect: str = ""  # what the failure must mention


FULL_RUNS = (
    FullRun("state machine sns:Publish", "RetrainStateMachineRoleDefaultPolicy", "sns:Publish"),
    FullRun("ingest dynamodb:PutItem", "IngestRoleDefaultPolicy", "dynamodb:PutItem"),
    FullRun(
        "SageMaker role s3:GetObject on the code asset",
        "SageMakerExecutionRoleDefaultPolicy",
        "s3:GetObject",
        resource_contains="cdk-hnb659fds-assets",
    ),
)


@dataclass
class Outcome:
    run: FullRun
    code: int = 0
    failure: str = ""
    denials: list[str] = field(default_factory=list)
    seconds: float = 0.0


def full_run(run: FullRun, assembly: Path, work: Path, base_model: str | None) -> Outcome:
    grant = find_template_grant(
        assembly,
        resource_prefix=run.prefix,
        action=run.action,
        resource_contains=run.resource_contains,
    )
    mutated = without_grant(assembly, work.parent / f"{work.name}-assembly", grant)
    outcome = Outcome(run)
    output = io.StringIO()

    def keep_denials(platform: LocalPlatform) -> None:
        outcome.denials = [d.message for d in platform.emulator.enforcer.denials]

    started = time.monotonic()
    with contextlib.redirect_stdout(output):
        outcome.code = run_demo(
            work, base_model=base_model, assembly=mutated, before_stop=keep_denials
        )
    outcome.seconds = time.monotonic() - started
    failed = [line for line in output.getvalue().splitlines() if "DEMO FAILED" in line]
    outcome.failure = failed[0].strip() if failed else ""
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--full-runs", type=int, default=len(FULL_RUNS))
    parser.add_argument("--base-model", default=None)
    args = parser.parse_args(argv)
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="permission-mutation-"))
    root.mkdir(parents=True, exist_ok=True)
    context = dict(CONTEXT, **({"base_model": args.base_model} if args.base_model else {}))

    print("== recorded run (the demo's loop, enforcement on)", flush=True)
    log = RequestLog()
    removals: list[Removal] = []

    def mutate_recorded(platform: LocalPlatform) -> None:
        removals.extend(redecide(platform, log))

    started = time.monotonic()
    code = run_demo(
        root / "recorded",
        base_model=args.base_model,
        make_enforcer=recording_enforcer(log),
        before_stop=mutate_recorded,
    )
    print(
        f"   loop exit {code}, {len(log.requests)} requests recorded, "
        f"{time.monotonic() - started:.0f} s"
    )
    caught = [r for r in removals if r.caught]
    duplicates = [r for r in removals if not r.caught and r.also_granted_by]
    print(
        f"\n== re-decided removals: caught {len(caught)}/{len(removals)} exercised grants; "
        f"{len(duplicates)} not caught because another statement grants the same"
    )
    for removal in removals:
        mark = "caught" if removal.caught else "MISSED"
        also = (
            f"; still granted by {', '.join(removal.also_granted_by)}" if not removal.caught else ""
        )
        print(
            f"   {mark:6} {removal.role}: {removal.grant.action} "
            f"(#{removal.grant.statement}, {removal.requests} requests{also})"
        )
    (root / "removals.json").write_text(
        json.dumps(
            [
                {
                    "role": r.role,
                    "policy": r.grant.policy,
                    "statement": r.grant.statement,
                    "action": r.grant.action,
                    "requests": r.requests,
                    "caught": r.caught,
                    "denial": r.example,
                    "also_granted_by": list(r.also_granted_by),
                }
                for r in removals
            ],
            indent=2,
        ),
        encoding="utf-8",
    )

    assembly = synth(root / "cdk.out", context)
    outcomes = []
    for index, run in enumerate(FULL_RUNS[: args.full_runs]):
        print(f"\n== full loop without {run.name}", flush=True)
        outcome = full_run(run, assembly, root / f"full-{index}", args.base_model)
        outcomes.append(outcome)
        print(f"   exit {outcome.code} after {outcome.seconds:.0f} s: {outcome.failure[:400]}")
        for message in outcome.denials[:3]:
            print(f"   denied: {message[:400]}")
    failed_right = sum(1 for o in outcomes if o.code != 0 and o.denials)
    print(
        f"\nmutation figure: caught {len(caught)}/{len(removals)} exercised grants "
        f"(re-decided; {len(duplicates)} duplicates of another statement); "
        f"full-loop removals failing with a denial: {failed_right}/{len(outcomes)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
