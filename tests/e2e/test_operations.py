"""Operating the platform on the local emulator, through tuneloop.operations.actions (what the
CLI and the console call): a freeze holds the pipeline's deployment, a person deploys the held
version through the release state machine, rolls it back to last-known-good through the
Rollback function, and every change is in the audit trail with who made it. Production
scales out under a burst of requests and back in after (the local platform's target
tracking), and scaling is suspended while a deployment updates the endpoint.

One platform for the module; the tests go in order.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.loop_helpers import (
    PERMISSIVE_POLICY,
    deployed_platform,
    drop_and_follow,
    given_assembly,
    wait_for,
    write_drop,
)
from tests.unit.tiny_models import make_tiny_causal_lm
from tuneloop.local.platform import LocalPlatform
from tuneloop.operations import actions
from tuneloop.operations.audit import Actor, list_records
from tuneloop.operations.names import PlatformNames

pytestmark = pytest.mark.e2e

PERSON = Actor(name="alice (operator)", kind="user", source="console")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    base = make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny")
    work = tmp_path_factory.mktemp("operations")
    context = {
        "stage": "local",
        "retrain_threshold": "5",
        "base_model": str(base),
        # Short cooldowns so the test sees scale-out and scale-in within a minute.
        "autoscaling": json.dumps(
            {"scale_in_cooldown_seconds": 5, "scale_out_cooldown_seconds": 5}
        ),
    }
    with deployed_platform(work, context, assembly=given_assembly(), permissive_gate=True) as local:
        yield local


@pytest.fixture(scope="module")
def names(platform: LocalPlatform) -> PlatformNames:
    return PlatformNames.for_stage("local")


def production_version(platform: LocalPlatform) -> str:
    item = platform.control_item("production")
    return str(item["model_version"]) if item else ""


def test_the_first_run_deploys_itself_and_is_audited_as_the_pipelines(
    platform: LocalPlatform, names: PlatformNames, tmp_path: Path
) -> None:
    run = drop_and_follow(platform, [write_drop(tmp_path / "gadget.jsonl", "gadget", 12)])
    assert run.status == "SUCCEEDED", run.cause
    assert production_version(platform) == run.name
    (record,) = list_records(names.audit_table, action="auto_deploy")
    assert record.target == run.name
    assert record.actor_kind == "iam" and record.source == "pipeline"


def _scaling_target(platform: LocalPlatform) -> dict[str, Any]:
    autoscaling: Any = boto3.client("application-autoscaling")
    (target,) = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
        "ScalableTargets"
    ]
    assert target["ResourceId"] == f"endpoint/{platform.resources.endpoint_name}/variant/AllTraffic"
    return dict(target)


def _suspended(target: dict[str, Any]) -> bool:
    state = target.get("SuspendedState") or {}
    return bool(state.get("DynamicScalingInSuspended") or state.get("DynamicScalingOutSuspended"))


def test_production_scales_out_under_load_and_back_in_after(platform: LocalPlatform) -> None:
    # The first deployment registered the variant for target tracking, not suspended
    target = _scaling_target(platform)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4) and not _suspended(target)
    # Judge a 10 s window (scaled to the per-minute metric) so the test need not wait minutes
    platform.emulator.scaling.window_seconds = 10.0
    endpoint = platform.resources.endpoint_name

    # A burst far above the local target (10 invocations per instance per minute)
    for _ in range(20):
        platform.invoke("Hello", max_new_tokens=1)
    assert wait_for(lambda: max(platform.emulator.scaling.instance_counts(endpoint) or [1]) > 1, 60)
    assert wait_for(
        lambda: (platform.emulator.scaling.instance_counts(endpoint) or [0])[-1] == 1, 90
    )

    counts = platform.emulator.scaling.instance_counts(endpoint)
    assert counts[0] == 1 and max(counts) > 1 and counts[-1] == 1, counts
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1


def test_a_freeze_holds_the_next_runs_deployment(
    platform: LocalPlatform, names: PlatformNames, tmp_path: Path
) -> None:
    serving = production_version(platform)
    actions.freeze(names, PERSON, "quarter-end: no model changes")
    with pytest.raises(actions.ActionError) as again:
        actions.freeze(names, PERSON, "twice")
    assert again.value.exit_code == 3

    run = drop_and_follow(platform, [write_drop(tmp_path / "widget.jsonl", "widget", 8)])

    assert run.status == "SUCCEEDED", run.cause
    assert "HeldByFreeze" in [state.name for state in run.states]
    assert production_version(platform) == serving
    held = platform.model_version(run.name)
    assert held is not None and held["status"] == "registered"
    (record,) = list_records(names.audit_table, action="freeze")
    assert record.actor == PERSON.name
    assert record.before["frozen"] is False and record.after["frozen"] is True


def test_a_person_deploys_the_held_version_through_the_release_path(
    platform: LocalPlatform, names: PlatformNames
) -> None:
    previous = production_version(platform)
    held = next(
        v["model_version"]
        for v in map(platform.model_version, [e["name"] for e in platform.executions()])
        if v and v["status"] == "registered"
    )

    # Watch the scalable target while the release updates the endpoint
    seen: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            seen.append(_suspended(_scaling_target(platform)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = actions.deploy_version(names, PERSON, held)
    try:
        release = platform.follow_run(started.execution_arn, timeout=600)
    finally:
        done.set()
        watcher.join(timeout=5)
    assert True in seen, "dynamic scaling is suspended while the endpoint updates"
    assert not _suspended(_scaling_target(platform)), "and restored once it serves again"

    assert release.status == "SUCCEEDED", release.cause
    assert production_version(platform) == held
    production = platform.control_item("production")
    assert production is not None
    assert production["last_known_good"]["model_version"] == previous
    assert platform.invoke("Hello", max_new_tokens=2)["model_version"] == held
    (record,) = list_records(names.audit_table, action="deploy")
    assert (record.actor, record.target) == (PERSON.name, held)
    assert record.before["model_version"] == previous
    assert record.request_id == started.request_id


def test_a_person_rolls_back_to_last_known_good(
    platform: LocalPlatform, names: PlatformNames
) -> None:
    production = platform.control_item("production")
    assert production is not None
    bad, good = production["model_version"], production["last_known_good"]["model_version"]

    result = actions.roll_back(names, PERSON)

    assert (result.from_version, result.to_version) == (bad, good)
    assert production_version(platform) == good
    config = platform.control_item("production")["endpoint_config_name"]  # type: ignore[index]
    platform.wait_for_endpoint(
        lambda e: e["EndpointStatus"] == "InService" and e["EndpointConfigName"] == config,
        timeout=300,
    )
    assert platform.invoke("Hello", max_new_tokens=2)["model_version"] == good
    rolled_back = platform.model_version(bad)
    assert rolled_back is not None and rolled_back["status"] == "rolled_back"
    (record,) = list_records(names.audit_table, action="rollback")
    assert (record.actor, record.target) == (PERSON.name, bad)
    assert record.after["model_version"] == good
    # Nothing left to roll back to: the operator is told what to do instead.
    with pytest.raises(actions.ActionError, match="--to VERSION") as refused:
        actions.roll_back(names, PERSON)
    assert refused.value.exit_code == 3


def test_unfreeze_is_audited_and_the_trail_reads_newest_first(names: PlatformNames) -> None:
    actions.unfreeze(names, PERSON)
    trail = [record.action for record in list_records(names.audit_table)]
    assert trail == ["unfreeze", "rollback", "deploy", "freeze", "auto_deploy"]


def test_an_operator_scores_one_suite_on_a_version_as_a_job(
    platform: LocalPlatform, names: PlatformNames
) -> None:
    from tuneloop.benchmarks.runs import runs_of

    version = production_version(platform)

    started = actions.run_benchmark(names, PERSON, version, "facts")
    run = platform.follow_run(started.execution_arn, timeout=600)

    assert run.status == "SUCCEEDED", run.cause
    steps = [state.name for state in run.states if state.name in ("Prepare", "Evaluate", "Record")]
    assert steps == ["Prepare", "Evaluate", "Record"]
    item = platform.model_version(version)
    assert item is not None
    (recorded,) = runs_of(item)
    assert (recorded["suite"], recorded["metric"], recorded["n_items"]) == ("facts", "acc", 1)
    assert recorded["run_id"] == started.execution_name
    (record,) = list_records(names.audit_table, action="benchmark_run_started")
    assert (record.actor, record.after["model_version"]) == (PERSON.name, version)


def test_continuous_evaluation_rescores_production_on_the_gate_suites(
    platform: LocalPlatform, names: PlatformNames, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuneloop.benchmarks.runs import runs_of
    from tuneloop.cli import main
    from tuneloop.operations import views
    from tuneloop.operations.gate_policy import store_policy

    version = production_version(platform)
    # The policy in force (an admin's, as the Gate would read it) names the suites.
    store_policy(names.control_table, PERMISSIVE_POLICY, by="e2e")

    # `tuneloop watch evaluate`: the schedule's input, through the deployed function.
    assert main(["watch", "evaluate", "--stage", "local", "--json"]) == 0
    started = json.loads(capsys.readouterr().out)
    runs = [platform.follow_run(r["execution_arn"], timeout=600) for r in started["runs"]]

    assert started["model_version"] == version
    assert sorted(r["suite"] for r in started["runs"]) == ["facts", "mmlu"]
    assert [run.status for run in runs] == ["SUCCEEDED", "SUCCEEDED"], [r.cause for r in runs]
    item = platform.model_version(version)
    assert item is not None
    scheduled = [r for r in runs_of(item) if r.get("trigger") == "scheduled"]
    checks = {r["suite"]: r["regression_check"] for r in scheduled}
    # The same model on the same frozen items: the score it had at the gate, no regression.
    for suite, check in checks.items():
        assert (check["regression"], check["crosses_versions"]) == (False, False), suite
        assert check["delta"] == pytest.approx(0.0, abs=1e-9), suite
    history = views.evaluation_history(names, version)
    assert sorted(p.suite for p in history) == ["facts", "mmlu"]
    (alarm,) = [a for a in views.alarm_states(names) if a.metric == "Regression"]
    assert alarm.state in ("OK", "INSUFFICIENT_DATA")  # the evaluator polls every second
