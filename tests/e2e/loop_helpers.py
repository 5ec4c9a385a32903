"""What the end-to-end and browser tests do on the local platform, as an operator would:
write a drop, wait for its run, change the gate's policy."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from tuneloop.incidents.record import Incident
from tuneloop.incidents.store import list_incidents
from tuneloop.local.platform import LocalPlatform, RunResult
from tuneloop.operations.names import PlatformNames

ASSEMBLY_VARIABLE = "TUNELOOP_ASSEMBLY"


def given_assembly() -> Path | None:
    """A cloud assembly to deploy instead of synthesizing (e.g. one `npx cdk synth` wrote)."""
    folder = os.environ.get(ASSEMBLY_VARIABLE)
    return Path(folder).resolve() if folder else None


ONE_QUESTION_BENCHMARK = {
    "id": "q1",
    "prompt": "Is water wet?",
    "choices": [" yes", " no"],
    "answer": 0,
}


@contextmanager
def deployed_platform(
    work: Path,
    context: dict[str, str],
    *,
    assembly: Path | None = None,
    enforce_permissions: bool | None = None,
    permissive_gate: bool = False,
) -> Iterator[LocalPlatform]:
    """A local platform deployed from ``assembly`` (synthesized with ``context`` when None),
    stopped on exit. ``permissive_gate`` adds a one-question company benchmark and a gate
    policy that approves every candidate, for tests about the loop rather than the gate."""
    local = LocalPlatform(
        work, context=context, log=lambda _: None, enforce_permissions=enforce_permissions
    ).start()
    try:
        local.deploy(assembly)
        if permissive_gate:
            benchmark = work / "facts.jsonl"
            benchmark.write_text(json.dumps(ONE_QUESTION_BENCHMARK) + "\n", encoding="utf-8")
            local.upload_benchmarks([benchmark])
            set_gate_policy(PERMISSIVE_POLICY)
        yield local
    finally:
        local.stop()


def write_drop(path: Path, topic: str, count: int) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            record = {
                "messages": [
                    {"role": "user", "content": f"What is {topic} number {i}?"},
                    {"role": "assistant", "content": f"{topic} number {i} is documented."},
                ]
            }
            out.write(json.dumps(record) + "\n")
    return path


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def gate_function() -> dict[str, Any]:
    lambdas: Any = boto3.client("lambda")
    return next(
        f
        for f in lambdas.list_functions()["Functions"]
        if f["Handler"] == "lambdas.gate.handler.handler"
    )


def set_gate_policy(policy: dict[str, Any]) -> None:
    """Change the gate's policy as an operator would: the deployed function's settings."""
    gate = gate_function()
    variables = dict(gate["Environment"]["Variables"])
    variables["GATE_POLICY"] = json.dumps(policy)
    boto3.client("lambda").update_function_configuration(
        FunctionName=gate["FunctionName"], Environment={"Variables": variables}
    )


# A tiny random model scores at chance: the loop's tests gate on the mechanics (suites
# present, compared item by item), not on quality; the rejection test raises the bar.
PERMISSIVE_POLICY = {
    "suites": {
        "facts": {"role": "must_pass", "metric": "acc", "floor": 0.0},
        "mmlu": {"role": "general", "metric": "acc", "delta": 1.0},
    },
    "bootstrap_samples": 200,
    "confidence": 0.95,
    "seed": 0,
}


def drop_and_follow(platform: LocalPlatform, files: list[Path]) -> RunResult:
    known = {e["executionArn"] for e in platform.executions()}
    platform.drop_files(files, dataset="e2e")
    return platform.follow_run(platform.wait_for_new_run(known), timeout=600)


def wait_for_incident(
    alarm_metric: str,
    condition: Callable[[Incident], bool],
    timeout: float = 90,
    *,
    since: str = "",
) -> Incident:
    """The newest incident of an alarm on ``alarm_metric`` opened at or after ``since``
    (ISO-8601 UTC) once ``condition`` holds for it (the Incidents and Rollback functions
    write it in their own time; ``since`` keeps an earlier incident of the same alarm from
    standing in for one not written yet)."""
    table = PlatformNames.for_stage("local").require("incidents_table")
    found: list[Incident] = []

    def ready() -> bool:
        found[:] = [
            i
            for i in list_incidents(table, limit=20)
            if i.metric.get("name") == alarm_metric and i.opened_at >= since
        ]
        return bool(found) and condition(found[0])

    if not wait_for(ready, timeout):
        raise AssertionError(f"no incident of a {alarm_metric} alarm became ready: {found}")
    return found[0]
