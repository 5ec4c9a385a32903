"""Continuous evaluation of model lines: each line's production version re-scored on the
line's gate policy in force (docs/monitoring.md, "Continuous evaluation").

A line's production is its Control item ``production#<line>`` and its policy the line's in
force (Control ``gate_policy#<line>``, else the line's in the stage config, else the
stage's: :func:`tuneloop.operations.gate_policy.line_policy_in_force`), so each line is
judged by the suites that gated it. A line with nothing in production is noted in its
entry, not an error: the other lines are still evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tuneloop.benchmarks.store import BenchmarkStore
from tuneloop.model_line_settings import ModelLines
from tuneloop.operations.gate_policy import line_policy_in_force
from tuneloop.watch.evaluation import EvaluationStart, start_scheduled_runs


@dataclass(frozen=True)
class LinesEvaluationStart:
    """One :class:`EvaluationStart` per line, in the stage's order."""

    lines: tuple[EvaluationStart, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"model_lines": [line.to_dict() for line in self.lines]}


def start_line_runs(
    when: datetime,
    *,
    lines: ModelLines,
    control_table: str,
    model_versions_table: str,
    store: BenchmarkStore,
    state_machine_arn: str,
    stage_policy: str,
    margin_without_delta: float,
) -> LinesEvaluationStart:
    """One benchmark run per suite of each line's policy on that line's production."""
    return LinesEvaluationStart(
        tuple(
            start_scheduled_runs(
                when,
                control_table=control_table,
                model_versions_table=model_versions_table,
                store=store,
                state_machine_arn=state_machine_arn,
                policy=line_policy_in_force(control_table, line, stage_policy),
                margin_without_delta=margin_without_delta,
                model_line=line.name,
            )
            for line in lines.lines
        )
    )
