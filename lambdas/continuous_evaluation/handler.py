"""ContinuousEvaluation: re-score the production version on the gate's suites.

Event (the EventBridge Scheduler schedule, or ``tuneloop watch evaluate``):
``{"trigger": "scheduled", "scheduled_time": "2026-12-03T06:00:00Z"}`` → one benchmark run
per suite of the gate policy in force, each at the suite's latest version, tagged
``scheduled`` with its gate-time baseline (``tuneloop.watch.evaluation``).

With model lines (``MODEL_LINES``), each line's production version (``production#<line>``)
on the line's policy in force instead (``tuneloop.watch.evaluation_lines``); the result is
``{"model_lines": [{"model_line", "model_version", "runs", "note"}, ...]}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.benchmarks.store import BenchmarkStore
from tuneloop.envmodel import load_env
from tuneloop.model_line_settings import ModelLines
from tuneloop.operations.gate_policy import policy_in_force
from tuneloop.watch.evaluation import scheduled_time, start_scheduled_runs
from tuneloop.watch.evaluation_lines import start_line_runs

logger = Logger()
tracer = Tracer()


@dataclass(frozen=True)
class Env:
    artifacts_bucket: str
    benchmarks_table: str
    control_table: str
    model_versions_table: str
    benchmark_run_state_machine_arn: str
    gate_policy: str
    margin_without_delta: float
    model_lines: str = "[]"
    """``ModelLines.to_json()`` of the stage: with lines, each line is evaluated."""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    when, lines = scheduled_time(event), ModelLines.from_json(env.model_lines)
    store = BenchmarkStore(table=env.benchmarks_table, bucket=env.artifacts_bucket)
    if lines:
        result = start_line_runs(
            when,
            lines=lines,
            control_table=env.control_table,
            model_versions_table=env.model_versions_table,
            store=store,
            state_machine_arn=env.benchmark_run_state_machine_arn,
            stage_policy=env.gate_policy,
            margin_without_delta=env.margin_without_delta,
        ).to_dict()
    else:
        result = start_scheduled_runs(
            when,
            control_table=env.control_table,
            model_versions_table=env.model_versions_table,
            store=store,
            state_machine_arn=env.benchmark_run_state_machine_arn,
            policy=policy_in_force(env.control_table, env.gate_policy),
            margin_without_delta=env.margin_without_delta,
        ).to_dict()
    logger.info("continuous evaluation started", extra={"result": result})
    return result
